//! The config example in the README must stay a config tollgate accepts.

#[test]
fn readme_config_example_loads() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\n")
        .expect("README has a ```toml example");
    let rest = &readme[start + "```toml\n".len()..];
    let end = rest.find("```").expect("the toml example is closed");
    let example = &rest[..end];
    if let Err(errors) = tollgate_core::config::load_str("README.md", example) {
        panic!("README example does not load: {errors:?}");
    }
}
