//! Which strings the server accepts as names: Incus object names travel in URLs and config, agent
//! names are shown to people, so control characters and Unicode format characters (bidi overrides
//! such as U+202E, zero-width characters) are refused in both.

/// Unicode general category Cf (format characters), as of Unicode 15.1.
const FORMAT_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

pub fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&c))
}

/// Why a name is refused, or `Ok` for a usable one.
fn check_characters(value: &str) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        Err("contains control characters")
    } else if value.chars().any(is_format_character) {
        Err("contains Unicode format characters (bidi overrides, zero-width characters)")
    } else {
        Ok(())
    }
}

/// An Incus object name (project, profile, pool, alias): at most 255 bytes, printable.
pub fn check_incus_name(value: &str) -> Result<(), &'static str> {
    if value.len() > 255 {
        return Err("longer than 255 bytes");
    }
    check_characters(value)
}

/// An agent's human-readable name: at most 64 characters, printable.
pub fn check_agent_name(value: &str) -> Result<(), &'static str> {
    if value.chars().count() > 64 {
        return Err("longer than 64 characters");
    }
    check_characters(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_control_characters_are_refused() {
        for bad in [
            "a\u{202E}b",
            "\u{200B}",
            "x\u{FEFF}",
            "tag\u{E0041}",
            "a\nb",
            "a\u{7}",
        ] {
            assert!(check_agent_name(bad).is_err(), "{bad:?}");
            assert!(check_incus_name(bad).is_err(), "{bad:?}");
        }
        for good in ["bot", "Émile's agent", "日本語", "a-b_c.d"] {
            assert!(check_agent_name(good).is_ok(), "{good:?}");
        }
        assert!(check_incus_name(&"x".repeat(256)).is_err());
        assert!(check_incus_name(&"x".repeat(255)).is_ok());
        assert!(check_agent_name(&"é".repeat(65)).is_err());
    }
}
