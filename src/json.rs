//! What the readers of the contract's JSON share: a value that must be one
//! of a set of words, and how a refusal says so.

use serde_json::Value;

/// `value`, when it is one of `words` (as the word of `words`, which lives
/// as long as the program).
pub fn word(value: &Value, words: &[&'static str]) -> Option<&'static str> {
    let given = value.as_str()?;
    words.iter().find(|w| **w == given).copied()
}

/// What a refusal says of a value that is not one of `words`.
pub fn one_of(words: &[&str]) -> String {
    format!("must be one of {}", words.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_word_is_one_of_the_words_and_nothing_else() {
        let words = ["info", "warn"];
        assert_eq!(word(&json!("warn"), &words), Some("warn"));
        assert_eq!(word(&json!("Warn"), &words), None);
        assert_eq!(word(&json!(1), &words), None);
        assert_eq!(one_of(&words), "must be one of info, warn");
    }
}
