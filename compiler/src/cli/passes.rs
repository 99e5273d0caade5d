//! `kestrel passes`: the passes and named pipelines, one line each.

pub fn run() {
    println!("passes:");
    for (name, about) in kestrel_passes::list_passes() {
        println!("  {name:<26} {about}");
    }
    println!("pipelines:");
    for (name, text, about) in kestrel_passes::list_pipelines() {
        let text = if text.is_empty() {
            "(no passes)".to_string()
        } else {
            text
        };
        println!("  {name:<26} {about}: {text}");
    }
}
