fn main() -> std::process::ExitCode {
    oxidp::memory::tune_allocator();
    oxidp::cli::run()
}
