//! The console's one templating approach: HTML built with `format!`/`write!` into a `Page`
//! buffer, where every value that did not come from the console's own code is wrapped in `Esc`.
//!
//! Invariant: `Esc` escapes `& < > " '` (and so is safe in text and in quoted attributes); any
//! schedule-provided string (name, task, labels, args, kwargs, errors quoting them) reaches the
//! page only through `Esc` or `Page::text`. It must not know about pages or schedules.

use std::fmt::{self, Display, Write};

/// A value shown HTML-escaped.
pub(crate) struct Esc<T>(pub T);

impl<T: Display> Display for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written through an adapter so values that are not strings escape without a copy.
        struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaper<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut start = 0;
                for (i, c) in s.char_indices() {
                    let entity = match c {
                        '&' => "&amp;",
                        '<' => "&lt;",
                        '>' => "&gt;",
                        '"' => "&quot;",
                        '\'' => "&#39;",
                        _ => continue,
                    };
                    self.0.write_str(&s[start..i])?;
                    self.0.write_str(entity)?;
                    start = i + 1;
                }
                self.0.write_str(&s[start..])
            }
        }
        write!(Escaper(f), "{}", self.0)
    }
}

/// `text`, escaped, as an owned string.
#[cfg(test)]
pub(crate) fn escape(text: &str) -> String {
    Esc(text).to_string()
}

/// A value for a URL's query string: percent-encoded (and then safe in an attribute too).
pub(crate) struct Url<'a>(pub &'a str);

impl Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in form_urlencoded::byte_serialize(self.0.as_bytes()) {
            f.write_str(chunk)?;
        }
        Ok(())
    }
}

/// An HTML document under construction.
#[derive(Default)]
pub(crate) struct Page {
    buf: String,
}

impl Page {
    pub(crate) fn new() -> Page {
        Page {
            buf: String::with_capacity(16 * 1024),
        }
    }

    /// Markup written by the console itself (never a value from a schedule or a request).
    pub(crate) fn raw(&mut self, markup: &str) -> &mut Page {
        self.buf.push_str(markup);
        self
    }

    /// Text, escaped.
    #[cfg(test)]
    pub(crate) fn text(&mut self, text: &str) -> &mut Page {
        let _ = write!(self.buf, "{}", Esc(text));
        self
    }

    pub(crate) fn into_string(self) -> String {
        self.buf
    }
}

impl Write for Page {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 5] = [
        "<img src=x onerror=alert(1)>",
        "\"><script>alert(2)</script>",
        "' onmouseover='alert(3)",
        "&lt;already&gt; & <b>",
        "javascript:alert(4)//\u{2028}",
    ];

    #[test]
    fn hostile_text_never_opens_a_tag_or_leaves_an_attribute() {
        for value in HOSTILE {
            let shown = escape(value);
            assert!(!shown.contains('<'), "{shown}");
            assert!(!shown.contains('>'), "{shown}");
            assert!(!shown.contains('"'), "{shown}");
            assert!(!shown.contains('\''), "{shown}");
            let attr = format!(
                "<a title=\"{}\" href=\"/x?name={}\">",
                Esc(value),
                Url(value)
            );
            assert_eq!(attr.matches('"').count(), 4, "{attr}");
            assert_eq!(attr.matches('<').count(), 1, "{attr}");
        }
    }

    #[test]
    fn escaping_is_exact_and_reversible() {
        assert_eq!(
            escape("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(
            escape("\"><script>alert(2)</script>"),
            "&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
        );
        assert_eq!(escape("a&b 'c'"), "a&amp;b &#39;c&#39;");
        assert_eq!(escape("plain é ✓"), "plain é ✓");
        assert_eq!(format!("{}", Esc(42)), "42");
    }

    #[test]
    fn page_text_escapes_and_raw_does_not() {
        let mut page = Page::new();
        page.raw("<td>").text("<b>x</b>").raw("</td>");
        assert_eq!(page.into_string(), "<td>&lt;b&gt;x&lt;/b&gt;</td>");
    }

    #[test]
    fn url_values_are_percent_encoded() {
        assert_eq!(Url("a/b c&d=\"").to_string(), "a%2Fb+c%26d%3D%22");
    }
}
