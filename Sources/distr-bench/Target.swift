/// A case's goal (issue 9 §2), written as comparisons so that whether it is met is computed from
/// the run's numbers, never typed in by hand. Ratios are always distr divided by the baseline:
/// for times lower is better (`ratioAtMost(3)`: within 3x the floor), for rates higher is
/// better (`ratioAtLeast(0.7)`: at least 70% of the plain copy).
struct Target: Sendable {
    enum Condition: Sendable {
        /// distr / baseline ≤ x
        case ratioAtMost(Double)
        /// distr / baseline ≥ x
        case ratioAtLeast(Double)
        /// distr ≤ x, in the case's unit
        case atMost(Double)
        /// distr ≥ x, in the case's unit
        case atLeast(Double)
    }

    var conditions: [Condition]

    static func ratioAtMost(_ x: Double) -> Target { Target(conditions: [.ratioAtMost(x)]) }
    static func ratioAtLeast(_ x: Double) -> Target { Target(conditions: [.ratioAtLeast(x)]) }
    static func atMost(_ x: Double) -> Target { Target(conditions: [.atMost(x)]) }
    static func atLeast(_ x: Double) -> Target { Target(conditions: [.atLeast(x)]) }

    /// Both goals at once.
    func and(_ other: Target) -> Target { Target(conditions: conditions + other.conditions) }

    /// `≤ 3x`, `≥ 0.7x and ≥ 6000 MB/s`, `≤ 0.1 s`.
    func text(unit: String) -> String {
        conditions.map { condition in
            switch condition {
            case .ratioAtMost(let x): "≤ \(Self.number(x))x"
            case .ratioAtLeast(let x): "≥ \(Self.number(x))x"
            case .atMost(let x): "≤ \(Self.number(x)) \(unit)"
            case .atLeast(let x): "≥ \(Self.number(x)) \(unit)"
            }
        }.joined(separator: " and ")
    }

    /// Whether the numbers meet every condition; nil when a ratio is asked for and there is no
    /// baseline (not measured in this run), or distr has no number.
    func met(distr: Double?, baseline: Double?) -> Bool? {
        guard let distr else { return nil }
        let ratio = baseline.flatMap { $0 > 0 ? distr / $0 : nil }
        var all = true
        for condition in conditions {
            switch condition {
            case .ratioAtMost(let x):
                guard let ratio else { return nil }
                all = all && ratio <= x
            case .ratioAtLeast(let x):
                guard let ratio else { return nil }
                all = all && ratio >= x
            case .atMost(let x): all = all && distr <= x
            case .atLeast(let x): all = all && distr >= x
            }
        }
        return all
    }

    /// 3, 0.7, 0.333: no trailing zeros.
    static func number(_ x: Double) -> String {
        if x == x.rounded() && abs(x) < 1e15 { return String(Int(x)) }
        var text = String(x)
        if let dot = text.firstIndex(of: "."), text.distance(from: dot, to: text.endIndex) > 4 {
            text = String(text[..<text.index(dot, offsetBy: 4)])
        }
        return text
    }
}

/// One line of the report.
struct BenchCase: Encodable {
    var name: String
    var unit: String
    /// distr's median; nil when the measurement failed (`problem` says why).
    var distr: Double?
    /// The same-run baseline's median; nil when there is none in this run.
    var baseline: Double?
    /// What the baseline is (`posix_spawn of /bin/true`, `mpirun -np 4 true`).
    var against: String
    var ratio: Double?
    var target: String?
    /// true/false when a target could be checked, nil (JSON null) when it has none or could not be.
    var met: Bool?
    /// Why the case failed or its output was wrong (lines cut or mislabelled); such a case is a miss.
    var problem: String?

    init(name: String, unit: String, distr: Double?, baseline: Double?, against: String, target: Target?, problem: String? = nil) {
        // JSON has no NaN or infinity: a number that is not finite is no number.
        let distr = distr.flatMap { $0.isFinite ? $0 : nil }
        let baseline = baseline.flatMap { $0.isFinite && $0 > 0 ? $0 : nil }
        self.name = name
        self.unit = unit
        self.distr = distr
        self.baseline = baseline
        self.against = against
        if let distr, let baseline { ratio = distr / baseline }
        self.target = target?.text(unit: unit)
        met = target?.met(distr: distr, baseline: baseline)
        if problem != nil || (distr == nil && target != nil) { met = false }
        self.problem = problem
    }

    enum CodingKeys: String, CodingKey {
        case name, unit, distr, baseline, against, ratio, target, met, problem
    }

    /// Every field is written, missing ones as null (the synthesized encoder leaves them out).
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(unit, forKey: .unit)
        try container.encode(distr, forKey: .distr)
        try container.encode(baseline, forKey: .baseline)
        try container.encode(against, forKey: .against)
        try container.encode(ratio, forKey: .ratio)
        try container.encode(target, forKey: .target)
        try container.encode(met, forKey: .met)
        try container.encode(problem, forKey: .problem)
    }
}
