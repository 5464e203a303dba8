//! The structure the docs promise, held by tests that read the sources: adapters stay outbound
//! (docs/architecture.md), the files of a folder import each other without loops, each Lambda
//! main stays a thin wrapper, and the README stays short with no link to a file that is gone.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root: `functions/core` is two levels below it.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// A path as the failure messages show it: relative to the workspace root.
fn shown(path: &Path) -> String {
    path.strip_prefix(workspace()).unwrap_or(path).display().to_string()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", shown(path)))
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Blanks `bytes[from..to]` with spaces, keeping the newlines so that lines keep their numbers.
fn blank(bytes: &mut [u8], from: usize, to: usize) {
    let to = to.min(bytes.len());
    for byte in &mut bytes[from.min(to)..to] {
        if *byte != b'\n' {
            *byte = b' ';
        }
    }
}

/// The code of a Rust file without its comments (`//`, `///`, `//!`, `/* */`) and without the
/// contents of its string and char literals: what is left is what the compiler reads as paths.
/// Every other byte stays where it was.
fn code_of(source: &str) -> Vec<u8> {
    let text = source.as_bytes();
    let mut code = text.to_vec();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&b| b == b'\n').map_or(text.len(), |n| i + n);
            blank(&mut code, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < text.len() {
                if text[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if text[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            i = j;
        } else if rest[0] == b'r'
            && (i == 0 || !is_ident(text[i - 1]) || (text[i - 1] == b'b' && (i == 1 || !is_ident(text[i - 2]))))
            && rest[1..].iter().position(|&b| b != b'#').is_some_and(|n| rest[1 + n] == b'"')
        {
            // A raw string: r"…", r#"…"#, br"…".
            let hashes = rest[1..].iter().take_while(|&&b| b == b'#').count();
            let open = i + 1 + hashes + 1;
            let mut close = b"\"".to_vec();
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end =
                text[open..].windows(close.len()).position(|w| w == close.as_slice()).map_or(text.len(), |n| open + n);
            blank(&mut code, open, end);
            i = end + close.len();
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < text.len() && text[j] != b'"' {
                j += if text[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut code, i + 1, j);
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\'', '"') or a lifetime ('a, 'static), which stays.
            if rest.get(1) == Some(&b'\\') {
                let end =
                    rest.get(3..).and_then(|r| r.iter().position(|&b| b == b'\'')).map_or(text.len(), |n| i + 3 + n);
                blank(&mut code, i + 1, end);
                i = end + 1;
            } else if let Some(c) = source[i + 1..].chars().next()
                && rest.get(1 + c.len_utf8()) == Some(&b'\'')
            {
                blank(&mut code, i + 1, i + 1 + c.len_utf8());
                i += 2 + c.len_utf8();
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    code
}

fn skip_space(code: &[u8], mut i: usize) -> usize {
    while code.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The identifier that starts at `i` (empty if none) and where it ends.
fn ident_at(code: &[u8], i: usize) -> (String, usize) {
    let end = i + code[i.min(code.len())..].iter().take_while(|&&b| is_ident(b)).count();
    (String::from_utf8_lossy(&code[i.min(end)..end]).into_owned(), end)
}

/// Where the block whose `{` is at `open` ends (just after its `}`).
fn block_end(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (n, &byte) in code[open..].iter().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return open + n + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// If a `mod NAME {` starts at `i`: its name, and where its `{` is.
fn inline_module_at(code: &[u8], i: usize) -> Option<(String, usize)> {
    if !code[i..].starts_with(b"mod")
        || (i > 0 && is_ident(code[i - 1]))
        || code.get(i + 3).is_some_and(|&b| is_ident(b))
    {
        return None;
    }
    let (name, end) = ident_at(code, skip_space(code, i + 3));
    let open = skip_space(code, end);
    (!name.is_empty() && code.get(open) == Some(&b'{')).then_some((name, open))
}

/// Blanks every `#[cfg(test)] mod NAME { … }`: a test module may use anything.
fn without_test_modules(code: &[u8]) -> Vec<u8> {
    let mut out = code.to_vec();
    let mut from = 0;
    while let Some(n) = code[from..].windows(12).position(|w| w == b"#[cfg(test)]") {
        let start = from + n;
        let mut i = skip_space(code, start + 12);
        // Further attributes, and a visibility, may stand between the cfg and the module.
        while code[i..].starts_with(b"#[") {
            i = skip_space(code, block_end_brackets(code, i + 1));
        }
        if code[i..].starts_with(b"pub") {
            i = skip_space(code, i + 3);
            if code.get(i) == Some(&b'(') {
                i = skip_space(code, code[i..].iter().position(|&b| b == b')').map_or(code.len(), |p| i + p + 1));
            }
        }
        match inline_module_at(code, i) {
            Some((_, open)) => {
                let end = block_end(code, open);
                blank(&mut out, start, end);
                from = end;
            }
            None => from = start + 12,
        }
    }
    out
}

/// Where the `[ … ]` whose `[` is at `open` ends (just after its `]`).
fn block_end_brackets(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (n, &byte) in code[open..].iter().enumerate() {
        match byte {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return open + n + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Every path the use tree or path expression at `i` names, each with where its last segment
/// is, and where the tree ends: `a::b::{c, d::{E, F as G}, self}` names `a::b::c`, `a::b::d::E`,
/// `a::b::d::F` and `a::b::self`.
fn paths_at(code: &[u8], i: usize) -> (Vec<(Vec<String>, usize)>, usize) {
    let i = skip_space(code, i);
    match code.get(i) {
        Some(b'{') => {
            let mut paths = Vec::new();
            let mut j = i + 1;
            loop {
                j = skip_space(code, j);
                match code.get(j) {
                    None => return (paths, j),
                    Some(b'}') => return (paths, j + 1),
                    Some(b',') => j += 1,
                    _ => {
                        let (found, end) = paths_at(code, j);
                        paths.extend(found);
                        j = if end == j { j + 1 } else { end };
                    }
                }
            }
        }
        Some(b'*') => (vec![(vec!["*".to_string()], i)], i + 1),
        _ => {
            let (ident, end) = ident_at(code, i);
            if ident.is_empty() {
                return (Vec::new(), i);
            }
            let after = skip_space(code, end);
            if code[after..].starts_with(b"::") {
                let (rest, end) = paths_at(code, after + 2);
                if rest.is_empty() {
                    return (vec![(vec![ident], i)], end);
                }
                let paths = rest
                    .into_iter()
                    .map(|(path, at)| (std::iter::once(ident.clone()).chain(path).collect(), at))
                    .collect();
                return (paths, end);
            }
            // `F as G`: the path is F.
            let (word, word_end) = ident_at(code, after);
            if word == "as" {
                let (_, renamed_end) = ident_at(code, skip_space(code, word_end));
                return (vec![(vec![ident], i)], renamed_end);
            }
            (vec![(vec![ident], i)], end)
        }
    }
}

/// A module path the code refers to, absolute from the crate root, and where.
struct Reference {
    path: Vec<String>,
    line: usize,
}

/// Every path starting with `crate::` or `super::` in `code`, resolved from the module the file
/// is (`module`, and the inline modules around the path) to a path from the crate root. A trailing
/// `self` or `*` names the module before it. A `super` above the crate root is dropped.
fn references(code: &[u8], module: &[String]) -> Vec<Reference> {
    let mut inline: Vec<(String, usize, usize)> = Vec::new();
    for i in 0..code.len() {
        if let Some((name, open)) = inline_module_at(code, i) {
            inline.push((name, open, block_end(code, open)));
        }
    }
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !is_ident(code[i]) || (i > 0 && is_ident(code[i - 1])) {
            i += 1;
            continue;
        }
        let (ident, end) = ident_at(code, i);
        let after = skip_space(code, end);
        if !matches!(ident.as_str(), "crate" | "super") || !code[after..].starts_with(b"::") {
            i = end;
            continue;
        }
        let (paths, path_end) = paths_at(code, i);
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().filter(|(_, open, close)| *open < i && i < *close).map(|(name, _, _)| name.clone()))
            .collect();
        for (path, at) in paths {
            let line = 1 + code[..at].iter().filter(|&&b| b == b'\n').count();
            let mut absolute = here.clone();
            let mut segments = path.iter().peekable();
            if segments.peek().is_some_and(|s| *s == "crate") {
                absolute.clear();
                segments.next();
            }
            let mut above_root = false;
            while segments.peek().is_some_and(|s| *s == "super") {
                above_root |= absolute.pop().is_none();
                segments.next();
            }
            if above_root {
                continue;
            }
            absolute.extend(segments.cloned());
            while absolute.last().is_some_and(|s| s == "self" || s == "*") {
                absolute.pop();
            }
            found.push(Reference { path: absolute, line });
        }
        i = path_end.max(end);
    }
    found
}

/// A Rust file of a crate: where it is, the module it is, its lines, and its code.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    lines: Vec<String>,
    code: Vec<u8>,
}

impl SourceFile {
    fn line(&self, number: usize) -> &str {
        self.lines.get(number - 1).map_or("", |line| line.trim())
    }
}

/// Every `.rs` file under `src` (a crate whose root file is `root_file`), with its module path.
fn crate_files(src: &Path, root_file: &str) -> Vec<SourceFile> {
    fn walk(dir: &Path, module: &[String], root_file: &str, out: &mut Vec<SourceFile>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, &[module, &[name]].concat(), root_file, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let module = if stem == "mod" || (module.is_empty() && stem == root_file.trim_end_matches(".rs")) {
                    module.to_vec()
                } else {
                    [module, &[stem.to_string()]].concat()
                };
                let text = read(&path);
                out.push(SourceFile {
                    lines: text.lines().map(str::to_string).collect(),
                    code: code_of(&text),
                    module,
                    path,
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(src, &[], root_file, &mut out);
    out
}

#[test]
fn no_adapter_imports_a_use_case_a_door_or_the_composition_root() {
    let src = workspace().join("functions/core/src");
    let files = crate_files(&src, "lib.rs");
    let adapters: Vec<&SourceFile> =
        files.iter().filter(|file| file.module.first().is_some_and(|m| m == "adapters")).collect();
    assert!(adapters.len() > 1, "found no adapters under {}", shown(&src.join("adapters")));
    let mut broken = Vec::new();
    for file in adapters {
        for reference in references(&file.code, &file.module) {
            if reference.path.first().is_some_and(|first| ["app", "inbound", "compose"].contains(&first.as_str())) {
                broken.push(format!(
                    "{}:{} refers to crate::{}: `{}`",
                    shown(&file.path),
                    reference.line,
                    reference.path.join("::"),
                    file.line(reference.line)
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "an adapter is outbound only and never imports app/, inbound/ or compose.rs (docs/architecture.md), but:\n{}",
        broken.join("\n")
    );
}

/// Where an edge between two files of a folder comes from: the first reference that makes it.
struct Evidence {
    file: String,
    line: usize,
    text: String,
    path: String,
}

/// The node a folder's parent file (`mod.rs`, `lib.rs`, `main.rs`) is in its folder's graph.
const PARENT: &str = "(parent)";

/// The graph of one folder's files: an edge from a child (a file, or a subfolder with all the
/// files in it) to each sibling, or to the parent file, its code outside test modules refers to.
/// The parent file's own references to its children are allowed and left out.
fn folder_graph(files: &[SourceFile], folder: &[String]) -> BTreeMap<String, BTreeMap<String, Evidence>> {
    let depth = folder.len();
    let children: BTreeSet<&String> = files
        .iter()
        .filter(|f| f.module.len() > depth && f.module[..depth] == *folder)
        .map(|f| &f.module[depth])
        .collect();
    let mut graph: BTreeMap<String, BTreeMap<String, Evidence>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.module.len() > depth && f.module[..depth] == *folder) {
        let from = &file.module[depth];
        for reference in references(&without_test_modules(&file.code), &file.module) {
            if reference.path.len() < depth || reference.path[..depth] != *folder {
                continue;
            }
            let to = match reference.path.get(depth) {
                Some(child) if children.contains(child) => child.as_str(),
                _ => PARENT,
            };
            if to == from {
                continue;
            }
            graph.entry(from.clone()).or_default().entry(to.to_string()).or_insert_with(|| Evidence {
                file: shown(&file.path),
                line: reference.line,
                text: file.line(reference.line).to_string(),
                path: reference.path.join("::"),
            });
        }
    }
    graph
}

/// A cycle of the graph, if it has one: its nodes in order, the first again at the end.
fn cycle(graph: &BTreeMap<String, BTreeMap<String, Evidence>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeMap<String, Evidence>>,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|&n| n == node) {
            return Some(stack[at..].iter().chain([&node]).map(|n| n.to_string()).collect());
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(found) = visit(next, graph, done, stack) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_files_of_each_folder_import_each_other_without_loops() {
    let root = workspace();
    let mut loops = Vec::new();
    let mut edges = 0;
    for (crate_dir, root_file) in [("functions/core/src", "lib.rs"), ("functions/local/src", "main.rs")] {
        let files = crate_files(&root.join(crate_dir), root_file);
        let folders: BTreeSet<Vec<String>> = files
            .iter()
            .map(|f| {
                let name = f.path.file_name().unwrap().to_string_lossy();
                let is_parent = name == "mod.rs" || (f.module.is_empty() && name == root_file);
                if is_parent { f.module.clone() } else { f.module[..f.module.len() - 1].to_vec() }
            })
            .collect();
        for folder in folders {
            let mut graph = folder_graph(&files, &folder);
            edges += graph.values().map(BTreeMap::len).sum::<usize>();
            let dir = [crate_dir.to_string()].into_iter().chain(folder.iter().cloned()).collect::<Vec<_>>().join("/");
            let name = |node: &str| match node {
                PARENT => "the folder's parent file".to_string(),
                _ if root.join(&dir).join(node).is_dir() => format!("{node}/"),
                _ => format!("{node}.rs"),
            };
            // Every loop: each one found is reported, then broken at its last edge to look for more.
            while let Some(nodes) = cycle(&graph) {
                let names: Vec<String> = nodes.iter().map(|node| name(node)).collect();
                let why: Vec<String> = nodes
                    .windows(2)
                    .map(|pair| {
                        let evidence = &graph[&pair[0]][&pair[1]];
                        format!(
                            "  {}:{} refers to crate::{}: `{}`",
                            evidence.file, evidence.line, evidence.path, evidence.text
                        )
                    })
                    .collect();
                loops.push(format!("in {dir}/: {}\n{}", names.join(" -> "), why.join("\n")));
                let [.., last, first] = nodes.as_slice() else { break };
                if let Some(edges) = graph.get_mut(last) {
                    edges.remove(first);
                }
            }
        }
    }
    assert!(edges > 0, "found no imports between the files of a folder at all: the reading of paths is broken");
    assert!(
        loops.is_empty(),
        "the files of one folder import each other without loops (docs/architecture.md), but:\n{}",
        loops.join("\n")
    );
}

#[test]
fn every_lambda_main_is_at_most_thirty_lines() {
    let mut long = Vec::new();
    for function in ["intake", "status", "builder", "ingest", "sweeper"] {
        let main = workspace().join("functions").join(function).join("src/main.rs");
        let lines = read(&main).lines().count();
        if lines > 30 {
            long.push(format!("{} has {lines} lines", shown(&main)));
        }
    }
    assert!(
        long.is_empty(),
        "each Lambda main is at most 30 lines around the App for AWS from compose.rs (docs/architecture.md), but:\n{}",
        long.join("\n")
    );
}

/// Every relative link target (`](path)`, `](path#anchor)`) in a markdown text outside fenced
/// code blocks, with its line: not a web address, not an anchor in the same page.
fn relative_links(markdown: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut fenced = false;
    for (n, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            let Some(close) = rest.find(')') else { continue };
            let target = rest[..close].split_whitespace().next().unwrap_or("");
            let file = target.split('#').next().unwrap_or("");
            if file.is_empty() || target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            links.push((n + 1, file.to_string()));
        }
    }
    links
}

#[test]
fn the_readme_fits_on_a_screen_or_five() {
    let root = workspace();
    let readme = root.join("README.md");
    let lines = read(&readme).lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; it stays at most 250, and the details go to docs/");

    let mut pages = vec![readme];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "found no pages in docs/");
    pages.extend(docs);
    let mut dead = Vec::new();
    for page in &pages {
        for (line, target) in relative_links(&read(page)) {
            if !page.parent().unwrap().join(&target).exists() {
                dead.push(format!("{}:{line} links to {target}, which does not exist", shown(page)));
            }
        }
    }
    assert!(dead.is_empty(), "a link in the docs points at a file that is gone:\n{}", dead.join("\n"));
}

/// The template's resource (a line `  Name:` at two spaces) each line of it belongs to.
fn template_resources(template: &str) -> Vec<(String, &str)> {
    let mut current = String::new();
    template
        .lines()
        .map(|line| {
            let top = line.strip_prefix("  ").filter(|rest| !rest.starts_with(' ') && rest.ends_with(':'));
            if let Some(name) = top {
                current = name.trim_end_matches(':').to_owned();
            }
            (current.clone(), line)
        })
        .collect()
}

#[test]
fn only_the_builder_is_told_of_the_signing_keys_secret_and_only_its_role_may_read_it() {
    let template = read(&workspace().join("template.yaml"));
    let lines = template_resources(&template);
    let readers: Vec<&str> = lines
        .iter()
        .filter(|(_, line)| line.trim() == "Resource: !Ref SigningKeySecret")
        .map(|(resource, _)| resource.as_str())
        .collect();
    assert_eq!(readers, ["BuilderRole"], "one grant, to the builder's role");
    let told: Vec<&str> = lines
        .iter()
        .filter(|(_, line)| line.contains("DATAREQUEST_SIGNING_SECRET_ARN:"))
        .map(|(resource, _)| resource.as_str())
        .collect();
    assert_eq!(told, ["BuilderFunction"], "only the builder's environment names the secret");
    let grant = lines.iter().position(|(_, line)| line.trim() == "Resource: !Ref SigningKeySecret").unwrap();
    assert_eq!(lines[grant - 1].1.trim(), "Action: secretsmanager:GetSecretValue", "read rights only");
}
