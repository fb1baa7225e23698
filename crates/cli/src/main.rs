//! The `agent` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    agent_registry_cli::main()
}
