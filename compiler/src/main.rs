use clap::Parser;

mod cli;

fn main() {
    kestrel::interrupt::install();
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(cli) {
        eprintln!("kestrel: error: {}", kestrel::error_chain(&e));
        std::process::exit(1);
    }
}
