use clap::Parser;

fn main() {
    let cli = kestrel::cli::Cli::parse();
    if let Err(e) = kestrel::cli::run(cli) {
        eprintln!("kestrel: error: {}", kestrel::cli::error_chain(&e));
        std::process::exit(1);
    }
}
