"""Time of the web app's requests, through its API: each bundled example twice (the first
request of a kind compiles its search, the second does not), with the page's defaults.

  pulse-jax app --port=7860 &
  python benchmarks/app_bench.py --url=http://127.0.0.1:7860/

Prints, per request, the wall time seen by the client and the app's own message (which
gives the server's time). Needs the app extra (gradio_client).
"""

import pathlib
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("url", "http://127.0.0.1:7860/", "a running pulse-jax app")
flags.DEFINE_integer("repeats", 2, "requests per example")

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = (ROOT / "examples" / "face_00.png", ROOT / "docs" / "app" / "photo.png")


def main(argv):
    del argv
    from gradio_client import Client, handle_file
    client = Client(FLAGS.url, verbose=False)
    for path in EXAMPLES:
        for k in range(FLAGS.repeats):
            t0 = time.perf_counter()
            message = client.predict(handle_file(str(path)), api_name="/upsample")[1]
            print(f"{path.name} request {k + 1}: {time.perf_counter() - t0:.1f} s; {message}",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
