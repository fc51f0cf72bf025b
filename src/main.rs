fn main() -> std::process::ExitCode {
    ttplan::run(std::env::args_os())
}
