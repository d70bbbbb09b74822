"""The production set-up (docker-compose.yml) runs every process the README says must run."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_runs_the_api_workers_dialer_scheduler_and_migrations():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    readme = (ROOT / "README.md").read_text()
    # the README names these commands, and says a scheduler must run
    for command in ("scfm db upgrade", "scfm serve", "scfm worker", "scfm dialer", "scfm scheduler"):
        assert f"`{command}" in readme, command
        assert any(args and " ".join(args).startswith(command) for args in commands.values()), command
    assert "Run at least one `scfm scheduler`" in readme and "Run at least one `scfm dialer`" in readme
    # everything but the migrations starts after them, and comes back if it dies
    migrate = next(name for name, args in commands.items() if args and " ".join(args) == "scfm db upgrade")
    for name, args in commands.items():
        if args and args[0] == "scfm" and name != migrate:
            assert services[name]["depends_on"][migrate]["condition"] == "service_completed_successfully", name
            assert services[name].get("restart") == "unless-stopped", name
