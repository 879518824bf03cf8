// A minimal plugin component for the tests and the documentation example
// of `AppApi::add` (which `include!`s this file): a WAT core module made a
// component of the world `callop:plugin/plugin@0.2.0` plus one application
// interface with `wit-component`. Only `fn`s and `use`s: it is valid both
// as a module and included into a doctest.

/// A plugin whose `init` calls `func(arg)`, a `func(n: u32) -> u32` of the
/// application interface `interface` (declared by the WIT package
/// `app_wit`), and returns `ok`; it registers no source, so it ends after
/// `init`. `dispatch` returns no results, `shutdown` does nothing.
pub fn build(app_wit: &str, interface: &str, func: &str, arg: u32) -> Vec<u8> {
    let core = format!(
        r#"(module
          (import "{interface}" "{func}" (func $f (param i32) (result i32)))
          (memory (export "memory") 1)
          (global $heap (mut i32) (i32.const 1024))
          ;; A bump allocator (the host writes `init`'s arguments with it).
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
            (local $p i32)
            (local.set $p (i32.and
              (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
              (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
            (global.set $heap (i32.add (local.get $p) (local.get 3)))
            (local.get $p))
          ;; Bytes 16..32 stay zero: `ok` of result<_, string>, an empty list.
          (func (export "callop:plugin/guest@0.2.0#init") (param i32 i32) (result i32)
            (drop (call $f (i32.const {arg})))
            (i32.const 16))
          (func (export "callop:plugin/guest@0.2.0#dispatch") (param i32 i32) (result i32)
            (i32.const 16))
          (func (export "callop:plugin/guest@0.2.0#shutdown") (param i64)))"#
    );
    let mut module = wat::parse_str(&core).expect("the core module is valid WAT");
    let mut resolve = wit_parser::Resolve::default();
    resolve
        .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/wit"))
        .expect("the callop:plugin WIT parses");
    // The interface's name inside its package: `iface` of `ns:pkg/iface@1.0.0`.
    let short = interface.rsplit('/').next().unwrap_or(interface);
    let short = short.split('@').next().unwrap_or(short);
    let world = format!(
        "{app_wit}\nworld test-plugin {{ include callop:plugin/plugin@0.2.0; import {short}; }}\n"
    );
    let app = resolve
        .push_str("app.wit", &world)
        .expect("the application WIT parses");
    let world = resolve
        .select_world(&[app], Some("test-plugin"))
        .expect("the test world exists");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("the module is a valid core module")
        .validate(true)
        .encode()
        .expect("the component encodes")
}
