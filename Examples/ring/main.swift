import DistrCore

// The classic ring: every rank sends to the next one, then receives from the previous one.
let node = try await Node.join()
let next = (node.id + 1) % node.count
let prev = (node.id + node.count - 1) % node.count
print("My ID is \(node.id)")
try await node.send("Next to \(node.id) is \(next)", to: next)
let msg = try await node.recv(String.self, from: prev)
print(msg)
try await node.leave()
