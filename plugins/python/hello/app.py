"""hello: the smallest Python plugin, exactly the README's example.

Prints ``hello 1`` … ``hello 3``, 250 ms apart, then drops its timer; with
no source left the plugin ends (exit 0). Build it with
``plugins/polyglot.sh python/hello`` (-> target/polyglot/python-hello.wasm).
"""

# plugins/python/hello/app.py
import callop
from callop import Drop, ToDuration

def init(loop, args):
    n = 0
    def on_timer(deadline):          # deadline: host instant, int ns
        nonlocal n
        n += 1
        print(f"hello {n}")
        return Drop if n == 3 else ToDuration(0.25)
    loop.insert_timer(0.25, on_timer)  # seconds
