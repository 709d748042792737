# The ring in Python: run with
#   distr-master run --local 4 --file python/distr.py --file python/ring.py python3 python/ring.py
from distr import Node

node = Node.join()
next_rank = (node.id + 1) % node.count
prev_rank = (node.id + node.count - 1) % node.count
print(f"My ID is {node.id}")
node.send(f"Next to {node.id} is {next_rank}", to=next_rank)
print(node.recv(source=prev_rank, kind=str))
node.leave()
