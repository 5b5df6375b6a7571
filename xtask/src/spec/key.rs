//! Which dotted key of a scenario file a parse error is about, for the
//! one line that names it.

/// The dotted key a parse error at `span` is about: the `[table]` above
/// it, the key on its line, and the key inside an inline table on that
/// line (`targets.rate.min`).
pub(super) fn at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let before = &text[line_start..start];
    let mut path: Vec<String> = table.into_iter().collect();
    if line.trim_start().starts_with('[') {
        // A table header: the error is about the table itself.
        let header = line.trim().trim_matches(|c| c == '[' || c == ']').trim();
        return Some(header.to_string());
    }
    match before.split_once('=') {
        // The span is on the key itself (an unknown field).
        None => path.push(
            text[start..span.end.min(line_end).max(start)]
                .trim()
                .to_string(),
        ),
        Some((outer, rest)) => {
            path.push(outer.trim().to_string());
            if let Some(i) = rest.rfind(['{', ',']) {
                if let Some((inner, _)) = rest[i + 1..].rsplit_once('=') {
                    path.push(inner.trim().to_string());
                }
            }
        }
    }
    path.retain(|p| !p.is_empty());
    (!path.is_empty()).then(|| path.join("."))
}
