# The Python half of a job whose even ranks run Swift (main.swift) and odd ranks Python (run.sh
# starts the right one): point-to-point messages and collectives between the two languages.
import distr

me, n = distr.node_id, distr.n_node
# Point to point: str travels as Swift's String.
distr.send((me + 1) % n, f"hello from rank {me} (Python)")
print(f"rank {me} (Python) got: {distr.recv((me - 1) % n)}")
# Collectives, called by every rank in the same order, with values Swift has types for.
languages = distr.allgather("Python")
settings = distr.bcast({"samples": 3} if me == 1 else None, root=1)  # a [String: Int] in Swift
samples = [float(i + me) for i in range(settings["samples"])]      # a [Double] in Swift
totals = distr.allreduce(samples, distr.SUM)
distr.gather(len(samples), root=0)
