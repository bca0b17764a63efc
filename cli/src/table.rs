//! Aligned text tables for people.

/// Renders `rows` under `headers`, each column as wide as its widest cell, two spaces apart.
/// Columns whose header starts with `>` are right-aligned (numbers); the `>` is not shown.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let right: Vec<bool> = headers.iter().map(|h| h.starts_with('>')).collect();
    let names: Vec<&str> = headers.iter().map(|h| h.trim_start_matches('>')).collect();
    let mut widths: Vec<usize> = names.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                text.push_str("  ");
            }
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&pad);
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&pad);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut names.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let rows = vec![
            vec!["a".to_owned(), "7".to_owned()],
            vec!["longer".to_owned(), "1234".to_owned()],
        ];
        assert_eq!(
            render(&["NAME", ">N"], &rows),
            "NAME       N\na          7\nlonger  1234\n"
        );
    }
}
