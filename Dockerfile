FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# the dashboard's message catalogues are compiled here (the .mo files are not in the repository)
RUN pip install --no-cache-dir "babel>=2.12,<3" \
    && pybabel compile -d src/scfm/entrypoints/dashboard/translations \
    && pip install --no-cache-dir .
EXPOSE 3000
CMD ["scfm", "serve", "--host", "0.0.0.0", "--port", "3000"]
