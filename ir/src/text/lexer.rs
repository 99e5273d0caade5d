//! Tokens of the text form.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// `[A-Za-z_][A-Za-z0-9_.]*`
    Ident(String),
    /// `"..."` with escapes resolved.
    Str(String),
    /// `%123`: a numbered value.
    NumVal(String),
    /// `%name` or `%"name"`: a named value.
    NameVal(String),
    /// `@name` or `@"name"`.
    At(String),
    /// Decimal integer, possibly negative.
    Int(String),
    /// Decimal float, possibly negative.
    Float(String),
    /// `0x...`
    Hex(u64),
    /// `-inf`
    NegInf,
    Arrow,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Lt,
    Gt,
    Comma,
    Colon,
    Eq,
    Question,
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::NumVal(s) => format!("`%{s}`"),
            Tok::NameVal(s) => format!("value `%{s}`"),
            Tok::At(s) => format!("`@{s}`"),
            Tok::Int(s) | Tok::Float(s) => format!("number `{s}`"),
            Tok::Hex(v) => format!("`0x{v:x}`"),
            Tok::NegInf => "`-inf`".into(),
            Tok::Arrow => "`->`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Question => "`?`".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A token and where it starts (1-based line and column, in characters).
#[derive(Clone, Debug)]
pub(crate) struct Spanned {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Whether `s` can be written without quotes.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_ident_start) && cs.all(is_ident_char)
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    col: usize,
}

impl Lexer<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(&self, line: usize, col: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            line,
            col,
            message: msg.into(),
        }
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|&c| is_ident_char(c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let (line, col) = (self.line, self.col);
        self.bump(); // opening quote
        let mut s = String::new();
        loop {
            let (l, c) = (self.line, self.col);
            match self.bump() {
                None | Some('\n') => return Err(self.err(line, col, "unterminated string")),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('u') => {
                        if self.bump() != Some('{') {
                            return Err(self.err(l, c, "expected `{` after `\\u`"));
                        }
                        let mut hex = String::new();
                        loop {
                            match self.bump() {
                                Some('}') => break,
                                Some(h) if h.is_ascii_hexdigit() && hex.len() < 6 => hex.push(h),
                                _ => return Err(self.err(l, c, "malformed `\\u{...}` escape")),
                            }
                        }
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.err(l, c, "invalid unicode escape"))?;
                        s.push(ch);
                    }
                    _ => return Err(self.err(l, c, "unknown escape in string")),
                },
                Some(ch) => s.push(ch),
            }
        }
    }

    /// A number starting at the current char (a digit, or `-` followed by a digit).
    fn number(&mut self) -> Result<Tok, ParseError> {
        let (line, col) = (self.line, self.col);
        let mut s = String::new();
        if self.peek() == Some('-') {
            s.push('-');
            self.bump();
        }
        if s.is_empty() && self.peek() == Some('0') {
            let mut look = self.chars.clone();
            look.next();
            if look.peek() == Some(&'x') {
                self.bump();
                self.bump();
                let mut hex = String::new();
                while let Some(c) = self.peek().filter(|c| c.is_ascii_hexdigit()) {
                    hex.push(c);
                    self.bump();
                }
                if self.peek().is_some_and(is_ident_char) {
                    return Err(self.err(line, col, "malformed hex literal"));
                }
                return u64::from_str_radix(&hex, 16)
                    .map(Tok::Hex)
                    .map_err(|_| self.err(line, col, "malformed hex literal"));
            }
        }
        let digits = |lx: &mut Self, s: &mut String| {
            let mut n = 0;
            while let Some(c) = lx.peek().filter(|c| c.is_ascii_digit()) {
                s.push(c);
                lx.bump();
                n += 1;
            }
            n
        };
        if digits(self, &mut s) == 0 {
            return Err(self.err(line, col, "expected digits"));
        }
        let mut float = false;
        if self.peek() == Some('.') {
            float = true;
            s.push('.');
            self.bump();
            if digits(self, &mut s) == 0 {
                return Err(self.err(line, col, "expected digits after `.`"));
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            float = true;
            s.push('e');
            self.bump();
            if let Some(c @ ('+' | '-')) = self.peek() {
                s.push(c);
                self.bump();
            }
            if digits(self, &mut s) == 0 {
                return Err(self.err(line, col, "expected exponent digits"));
            }
        }
        if self.peek().is_some_and(is_ident_char) {
            return Err(self.err(line, col, "malformed number"));
        }
        Ok(if float { Tok::Float(s) } else { Tok::Int(s) })
    }

    fn next_token(&mut self) -> Result<Spanned, ParseError> {
        // Skip whitespace and comments.
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') => {
                    let mut look = self.chars.clone();
                    look.next();
                    if look.peek() == Some(&'/') {
                        while self.peek().is_some_and(|c| c != '\n') {
                            self.bump();
                        }
                    } else {
                        return Err(self.err(self.line, self.col, "unexpected `/`"));
                    }
                }
                _ => break,
            }
        }
        let (line, col) = (self.line, self.col);
        let Some(c) = self.peek() else {
            return Ok(Spanned {
                tok: Tok::Eof,
                line,
                col,
            });
        };
        let single = |t| Some(t);
        let punct = match c {
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            '[' => single(Tok::LBracket),
            ']' => single(Tok::RBracket),
            '{' => single(Tok::LBrace),
            '}' => single(Tok::RBrace),
            '<' => single(Tok::Lt),
            '>' => single(Tok::Gt),
            ',' => single(Tok::Comma),
            ':' => single(Tok::Colon),
            '=' => single(Tok::Eq),
            '?' => single(Tok::Question),
            _ => None,
        };
        let tok = if let Some(t) = punct {
            self.bump();
            t
        } else if c == '"' {
            Tok::Str(self.string()?)
        } else if is_ident_start(c) {
            Tok::Ident(self.ident())
        } else if c.is_ascii_digit() {
            self.number()?
        } else if c == '-' {
            let mut look = self.chars.clone();
            look.next();
            match look.peek() {
                Some('>') => {
                    self.bump();
                    self.bump();
                    Tok::Arrow
                }
                Some(d) if d.is_ascii_digit() => self.number()?,
                Some(d) if is_ident_start(*d) => {
                    self.bump();
                    let id = self.ident();
                    if id != "inf" {
                        return Err(self.err(line, col, format!("unexpected `-{id}`")));
                    }
                    Tok::NegInf
                }
                _ => return Err(self.err(line, col, "unexpected `-`")),
            }
        } else if c == '%' || c == '@' {
            self.bump();
            let name = match self.peek() {
                Some('"') => Some(self.string()?),
                Some(d) if is_ident_start(d) => Some(self.ident()),
                Some(d) if c == '%' && d.is_ascii_digit() => {
                    let mut s = String::new();
                    while let Some(d) = self.peek().filter(|d| d.is_ascii_digit()) {
                        s.push(d);
                        self.bump();
                    }
                    if self.peek().is_some_and(is_ident_char) {
                        return Err(self.err(line, col, "malformed value name"));
                    }
                    return Ok(Spanned {
                        tok: Tok::NumVal(s),
                        line,
                        col,
                    });
                }
                _ => None,
            };
            match (c, name) {
                ('%', Some(n)) => Tok::NameVal(n),
                ('@', Some(n)) => Tok::At(n),
                _ => return Err(self.err(line, col, format!("expected a name after `{c}`"))),
            }
        } else {
            return Err(self.err(line, col, format!("unexpected character {c:?}")));
        };
        Ok(Spanned { tok, line, col })
    }
}

/// Splits `text` into tokens, ending with [`Tok::Eof`].
pub(crate) fn lex(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let mut lx = Lexer {
        chars: text.chars().peekable(),
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let t = lx.next_token()?;
        let eof = t.tok == Tok::Eof;
        out.push(t);
        if eof {
            return Ok(out);
        }
    }
}

/// Writes `s` as a quoted string with escapes.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` bare if it is an identifier, else quoted.
pub(crate) fn name_text(s: &str) -> String {
    if is_ident(s) {
        s.to_string()
    } else {
        quote(s)
    }
}
