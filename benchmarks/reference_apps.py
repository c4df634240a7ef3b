"""The two references `serve_bench.py` measures our server against, under the same gunicorn settings.

`noop_app()`: a Flask route that does nothing (the framework's floor).
`keras_app()`: what AWS's bring-your-own examples do: load the Keras model in each worker on first use and
call `model.predict` per request (for top-k: on every item of the catalogue).
"""

import json
import os

import numpy as np
from flask import Flask, Response, request


def noop_app() -> Flask:
    app = Flask("noop")

    @app.route("/ping", methods=["GET"])
    def ping():
        return Response('{"status": "ok"}', mimetype="application/json")

    @app.route("/invocations", methods=["POST"])
    def invocations():
        request.get_data()
        return Response('{"ok": true}', mimetype="application/json")

    return app


def keras_app() -> Flask:
    app = Flask("keras-naive")
    state = {}

    def model():
        if "model" not in state:  # lazily, per worker, as the AWS examples do
            import keras

            from ncf import models  # noqa: F401 - registers the custom layers
            from ncf.vocab import Vocabulary

            folder = os.environ["NAIVE_MODEL_DIR"]
            state["model"] = keras.models.load_model(os.path.join(folder, "model.keras"))
            vocab = np.load(os.path.join(folder, "vocabulary.npz"))
            state["users"], state["items"] = Vocabulary(vocab["users"]), Vocabulary(vocab["items"])
        return state

    @app.route("/ping", methods=["GET"])
    def ping():
        return Response('{"status": "ok"}', mimetype="application/json")

    @app.route("/invocations", methods=["POST"])
    def invocations():
        s = model()
        body = json.loads(request.get_data())
        if "instances" in body:
            users = s["users"].lookup([r["user"] for r in body["instances"]])
            items = s["items"].lookup([r["item"] for r in body["instances"]])
            scores = s["model"].predict({"user": users, "item": items}, verbose=0)
            return Response(json.dumps({"predictions": [float(x) for x in scores]}), mimetype="application/json")
        user = s["users"].lookup([body["user"]])[0]
        n = len(s["items"])
        scores = s["model"].predict({"user": np.full(n, user), "item": np.arange(n)}, verbose=0)
        top = np.argsort(-scores)[: body.get("k", 10)]
        return Response(json.dumps({"itemList": [{"itemId": i, "score": float(scores[t])}
                                                 for i, t in zip(s["items"].decode(top), top)]}),
                        mimetype="application/json")

    return app
