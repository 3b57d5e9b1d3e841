//! An error and its causes as one line.

/// `error: cause: cause ...`, so a socket path's "No such file or directory" or rustls's
/// certificate complaint is visible in a one-line message; a cause whose text the line already
/// holds (many errors repeat their source) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_follow_in_order_without_repeats() {
        let error = Layer(
            "GET /1.0",
            Some(Box::new(Layer(
                "connect failed: refused",
                Some(Box::new(Layer("refused", None))),
            ))),
        );
        assert_eq!(error_chain(&error), "GET /1.0: connect failed: refused");
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
