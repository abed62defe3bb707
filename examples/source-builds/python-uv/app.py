import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"{os.environ.get('GREETING', 'hello')} from flask, locked by uv, uid {os.getuid()}\n"
