/// The release this build belongs to.
public enum DistrVersion {
    public static let string = "0.1.0"
}
