# Rank 1 of the mixed-language test: talks to a Swift rank 0 (distr-check python-peer).
import array
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from distr import Node  # noqa: E402

node = Node.join()
assert node.recv(source=0, kind=str) == "hello from swift"
values = node.recv(source=0)
assert values.typecode == "d" and list(values) == [1.5, 2.5], values
assert node.recv(source=0, tag=3, kind=int) == 42
node.send("hello from python", to=0)
node.send(array.array("i", [1, -2, 3]), to=0)
node.send(0.25, to=0, tag=5)
node.send(["a", "b"], to=0)
print("ok python-peer", flush=True)
node.leave()
