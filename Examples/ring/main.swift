@preconcurrency import Glibc
import DistrCore

// The classic ring: every rank sends to the next one, then receives from the previous one.
// `Node.run` joins the job, runs the body, leaves and exits; an error, such as starting the
// program without distr-master, is one line on stderr and exit status 1.
if CommandLine.arguments.count > 1 {
    let help = ["-h", "--help"].contains(CommandLine.arguments[1])
    fputs("\(help ? "" : "ring: takes no arguments; ")usage: distr-master run --local 4 ring\n", help ? stdout : stderr)
    exit(help ? 0 : 64)
}

await Node.run { node in
    let next = (node.id + 1) % node.count
    let prev = (node.id + node.count - 1) % node.count
    print("My ID is \(node.id)")
    try await node.send("Next to \(node.id) is \(next)", to: next)
    let msg = try await node.recv(String.self, from: prev)
    print(msg)
}
