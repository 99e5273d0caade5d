//! `kestrel passes`: the passes and named pipelines, one line each.

pub fn run() {
    say!("passes:");
    for (name, about) in kestrel_passes::list_passes() {
        say!("  {name:<26} {about}");
    }
    say!("pipelines:");
    for (name, text, about) in kestrel_passes::list_pipelines() {
        let text = if text.is_empty() {
            "(no passes)".to_string()
        } else {
            text
        };
        say!("  {name:<26} {about}: {text}");
    }
}
