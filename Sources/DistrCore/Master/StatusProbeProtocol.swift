/// The master's side of a `status` connection, as a pure state machine.
///
/// ```
/// idle ──start──▶ awaitingReport ──statusReport──▶ ended (report)
///   awaitingReport ──failure / other message / connection lost──▶ ended (failed)
/// ```
package struct StatusProbeProtocol: Sendable {
    package enum State: Equatable, Sendable {
        case idle
        case awaitingReport
        case ended
    }

    package enum Action: Equatable, Sendable {
        case send(ControlMessage)
        case report(StatusReport)
        case failed(String)
    }

    package private(set) var state: State = .idle

    package init() {}

    /// Asks for the report; `now` is the master's wall clock in nanoseconds.
    package mutating func start(now: UInt64) -> [Action] {
        guard state == .idle else { return [] }
        state = .awaitingReport
        return [.send(.statusRequest(sentAt: now))]
    }

    package mutating func received(_ message: ControlMessage) -> [Action] {
        // The worker's heartbeats run on every control connection; they say nothing here.
        guard state == .awaitingReport, message != .workerHeartbeat else { return [] }
        state = .ended
        switch message {
        case .statusReport(let report): return [.report(report)]
        case .failure(let reason):
            return [.failed("the worker did not answer the status request: \(reason) (is it an older distr-worker?)")]
        default: return [.failed("protocol violation: the worker sent \(message.name) instead of a status report")]
        }
    }

    package mutating func connectionEnded(_ reason: String) -> [Action] {
        guard state == .awaitingReport else { return [] }
        state = .ended
        return [.failed("the connection ended before the status report (\(reason))")]
    }
}
