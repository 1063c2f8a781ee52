//! Every shipped preset resolves, states a source for every value it
//! sets, only sets values its base has, and survives being written out and
//! read back.

use nextio_presets::{Overlay, PRESETS, Tree, preset, root};

#[test]
fn every_preset_resolves_under_its_own_name() {
    for p in PRESETS {
        let t = preset(p.name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.name(), p.name);
        assert!(!t.description().is_empty(), "{} has no description", p.name);
        let doc = Overlay::parse(p.text, p.name).unwrap();
        assert_eq!(
            doc.name.as_deref(),
            Some(p.name),
            "file name and `name` differ"
        );
    }
    assert!(preset("no-such-host").is_err());
}

#[test]
fn every_value_a_file_sets_has_a_source() {
    for p in PRESETS {
        let t = preset(p.name).unwrap();
        let own: Vec<_> = t
            .leaves()
            .into_iter()
            .filter(|l| l.source.is_some_and(|s| s.from == p.name))
            .collect();
        assert!(!own.is_empty(), "{} sets nothing", p.name);
        for l in own {
            let text = &l.source.unwrap().text;
            assert!(
                text.starts_with("source: ") || text.starts_with("assumption: "),
                "{}: `{}` has no `source:` or `assumption:` comment above it (got {text:?})",
                p.name,
                l.path
            );
            assert!(
                text.len() > "assumption: ".len() + 10,
                "{}: `{}`'s source says nothing: {text:?}",
                p.name,
                l.path
            );
        }
    }
}

#[test]
fn every_preset_has_the_root_shape() {
    let root_paths: Vec<String> = root().leaves().into_iter().map(|l| l.path).collect();
    for p in PRESETS {
        let paths: Vec<String> = preset(p.name)
            .unwrap()
            .leaves()
            .into_iter()
            .map(|l| l.path)
            .collect();
        assert_eq!(paths, root_paths, "{}", p.name);
    }
}

#[test]
fn a_preset_written_out_reads_back_the_same() {
    for p in PRESETS {
        let t = preset(p.name).unwrap();
        let text = t.to_toml();
        let doc = Overlay::parse(&text, "written").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let back = Tree::whole(&doc, p.name);
        assert_eq!(back.name(), t.name());
        assert_eq!(back.description(), t.description());
        for (a, b) in t.leaves().iter().zip(back.leaves()) {
            assert_eq!(a.path, b.path);
            assert_eq!(a.value, b.value, "{}", a.path);
            assert_eq!(
                a.source.map(|s| &s.text),
                b.source.map(|s| &s.text),
                "{}",
                a.path
            );
        }
        assert_eq!(t.leaves().len(), back.leaves().len());
    }
}

#[test]
fn presets_differ_from_the_root_only_in_their_machine() {
    // Everything outside `machine.` is read from the root, whatever host
    // a model is built as: a preset that changed it would change nothing.
    for p in PRESETS {
        for (path, ..) in preset(p.name).unwrap().differences(root()) {
            assert!(
                path.starts_with("machine."),
                "{} changes `{path}`, which models read from the root",
                p.name
            );
        }
    }
}
