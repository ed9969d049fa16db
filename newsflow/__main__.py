from newsflow.cli import app

app()
