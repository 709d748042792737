# The classic ring in Python: every rank sends to the next one, then receives from the previous one.
#   distr-master run --local 4 --env PYTHONPATH=$PWD/python python3 $PWD/Examples/python/ring.py
import distr

next_rank = (distr.node_id + 1) % distr.n_node
prev_rank = (distr.node_id - 1) % distr.n_node
print(f"My ID is {distr.node_id}")
distr.send(next_rank, f"Next to {distr.node_id} is {next_rank}")
print(distr.recv(prev_rank))
