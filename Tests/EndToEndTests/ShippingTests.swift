import Foundation
import Testing

@testable import DistrCore

@Suite(.hangGuard) struct ShippingTests {
    init() { Signals.ignorePipe() }

    /// The test plays the worker, so that the file can vanish exactly between the master's
    /// hashing and its sending.
    @Test func fileThatVanishesBeforeItIsSent_endsTheJobWithAClearErrorInsteadOfHanging() throws {
        let dir = try TemporaryDirectory()
        let secretPath = dir.path + "/secret"
        try ClusterSecret.generate(path: secretPath)
        let secret = try ClusterSecret.load(path: secretPath)
        try dir.write("data.bin", String(repeating: "x", count: 100_000))
        let (listener, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(listener) }
        let master = try TestProcess([
            Binaries.master, "exec", "--hosts", "127.0.0.1:\(address.port)", "--secret-file", secretPath, "--file",
            dir.path + "/data.bin", "--", "true",
        ])

        let fd = try TCPSocket.accept(listener)
        let (_, keys) = try Connection.serverHandshake(fd: fd, deadline: .after(10)) { _ in secret }
        let connection = try Connection.accept(fd: fd, peer: "master", keys: keys, headerOnlyTypes: [ControlMessage.fileDataType])
        defer { connection.close() }
        guard case .jobStart(let spec) = try connection.receiveMessage(idle: .after(10)) else {
            Issue.record("expected a job description")
            return
        }
        #expect(spec.manifest.map(\.path) == ["data.bin"])
        unlink(dir.path + "/data.bin")
        try connection.send(.filesNeeded([0]))

        // The master tells the worker why it gives up, then says so and exits.
        let cancel = try connection.receiveMessage(idle: .after(10))
        #expect(cancel.name == "cancel" && "\(cancel)".contains("data.bin"), "\(cancel)")
        let run = TestProcess.run(master, timeout: 20)
        #expect(run.status == 69)
        #expect(run.stderr.contains("cannot read '\(dir.path)/data.bin' to ship it"), "\(run.stderr)")
    }
}
