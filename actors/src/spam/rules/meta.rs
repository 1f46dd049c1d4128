//! `meta` expressions: Perl's arithmetic and logic over rule results
//! (`(A && !B) || C`, `(A + B + C) > 1`), parsed once and evaluated per
//! message with each rule's hit count.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaExpr {
    Number(f64),
    Rule(String),
    /// A rule of the book, by index (after `resolve`).
    Index(usize),
    Not(Box<MetaExpr>),
    Neg(Box<MetaExpr>),
    Binary(Op, Box<MetaExpr>, Box<MetaExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

/// Nesting a parse will follow: a bound on the recursion of hostile input.
const DEPTH_MAX: usize = 64;

impl MetaExpr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let tokens = lex(text)?;
        let mut p = Parser { tokens, at: 0, depth: 0 };
        let e = p.or()?;
        match p.tokens.get(p.at) {
            None => Ok(e),
            Some(t) => Err(format!("unexpected {t:?}")),
        }
    }

    /// The rule names it reads.
    pub fn rules(&self, out: &mut Vec<String>) {
        match self {
            Self::Number(_) | Self::Index(_) => {}
            Self::Rule(r) => out.push(r.clone()),
            Self::Not(e) | Self::Neg(e) => e.rules(out),
            Self::Binary(_, a, b) => {
                a.rules(out);
                b.rules(out);
            }
        }
    }

    /// The book's rules this reads, by index (after `resolve`).
    pub fn indexes(&self, out: &mut Vec<usize>) {
        match self {
            Self::Number(_) | Self::Rule(_) => {}
            Self::Index(i) => out.push(*i),
            Self::Not(e) | Self::Neg(e) => e.indexes(out),
            Self::Binary(_, a, b) => {
                a.indexes(out);
                b.indexes(out);
            }
        }
    }

    /// Replaces the names `index` knows by their index, so evaluating
    /// reads a slot instead of hashing a name.
    pub fn resolve(self, index: &dyn Fn(&str) -> Option<usize>) -> Self {
        match self {
            Self::Rule(r) => index(&r).map_or(Self::Rule(r), Self::Index),
            Self::Not(e) => Self::Not(Box::new(e.resolve(index))),
            Self::Neg(e) => Self::Neg(Box::new(e.resolve(index))),
            Self::Binary(op, a, b) => Self::Binary(op, Box::new(a.resolve(index)), Box::new(b.resolve(index))),
            other => other,
        }
    }

    /// `value` gives a named rule's result; `slot` a resolved one's.
    pub fn eval(&self, value: &dyn Fn(&str) -> f64) -> f64 {
        self.eval_with(&|_| 0.0, value)
    }

    pub fn eval_with(&self, slot: &dyn Fn(usize) -> f64, value: &dyn Fn(&str) -> f64) -> f64 {
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            Self::Number(n) => *n,
            Self::Rule(r) => value(r),
            Self::Index(i) => slot(*i),
            Self::Not(e) => truth(e.eval_with(slot, value) == 0.0),
            Self::Neg(e) => -e.eval_with(slot, value),
            Self::Binary(op, a, b) => {
                let x = a.eval_with(slot, value);
                match op {
                    Op::Or => {
                        if x != 0.0 {
                            x
                        } else {
                            b.eval_with(slot, value)
                        }
                    }
                    Op::And => {
                        if x == 0.0 {
                            x
                        } else {
                            b.eval_with(slot, value)
                        }
                    }
                    _ => {
                        let y = b.eval_with(slot, value);
                        match op {
                            Op::Eq => truth(x == y),
                            Op::Ne => truth(x != y),
                            Op::Lt => truth(x < y),
                            Op::Le => truth(x <= y),
                            Op::Gt => truth(x > y),
                            Op::Ge => truth(x >= y),
                            Op::Add => x + y,
                            Op::Sub => x - y,
                            Op::Mul => x * y,
                            _ if y == 0.0 => 0.0,
                            _ => x / y,
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Ident(String),
    Op(&'static str),
    Open,
    Close,
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    const OPS: [&str; 14] = ["||", "&&", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "!", "="];
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        if c == '(' || c == ')' {
            out.push(if c == '(' { Token::Open } else { Token::Close });
            rest = &rest[1..];
        } else if c.is_ascii_digit() || c == '.' {
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            out.push(Token::Num(rest[..end].parse().map_err(|_| format!("bad number {:?}", &rest[..end]))?));
            rest = &rest[end..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            out.push(Token::Ident(rest[..end].to_string()));
            rest = &rest[end..];
        } else if let Some(op) = OPS.iter().find(|o| rest.starts_with(**o)) {
            if *op == "=" {
                return Err("'=' is not an operator (==?)".into());
            }
            out.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else {
            return Err(format!("unexpected {c:?}"));
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek_op(&self, ops: &[&'static str]) -> Option<&'static str> {
        match self.tokens.get(self.at) {
            Some(Token::Op(o)) if ops.contains(o) => Some(o),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Self) -> Result<MetaExpr, String>,
    ) -> Result<MetaExpr, String> {
        let mut left = next(self)?;
        while let Some(op) = self.peek_op(ops) {
            self.at += 1;
            let right = next(self)?;
            let op = match op {
                "||" => Op::Or,
                "&&" => Op::And,
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "+" => Op::Add,
                "-" => Op::Sub,
                "*" => Op::Mul,
                _ => Op::Div,
            };
            left = MetaExpr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<MetaExpr, String> {
        self.binary(&["||"], Self::and)
    }
    fn and(&mut self) -> Result<MetaExpr, String> {
        self.binary(&["&&"], Self::compare)
    }
    fn compare(&mut self) -> Result<MetaExpr, String> {
        self.binary(&["==", "!=", "<=", ">=", "<", ">"], Self::sum)
    }
    fn sum(&mut self) -> Result<MetaExpr, String> {
        self.binary(&["+", "-"], Self::product)
    }
    fn product(&mut self) -> Result<MetaExpr, String> {
        self.binary(&["*", "/"], Self::unary)
    }

    fn unary(&mut self) -> Result<MetaExpr, String> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err("nested too deeply".into());
        }
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        let e = match token {
            Some(Token::Op("!")) => MetaExpr::Not(Box::new(self.unary()?)),
            Some(Token::Op("-")) => MetaExpr::Neg(Box::new(self.unary()?)),
            Some(Token::Num(n)) => MetaExpr::Number(n),
            Some(Token::Ident(r)) => MetaExpr::Rule(r),
            Some(Token::Open) => {
                let e = self.or()?;
                if self.tokens.get(self.at) != Some(&Token::Close) {
                    return Err("missing )".into());
                }
                self.at += 1;
                e
            }
            Some(t) => return Err(format!("unexpected {t:?}")),
            None => return Err("expression ends too soon".into()),
        };
        self.depth -= 1;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str, hits: &[(&str, f64)]) -> f64 {
        let e = MetaExpr::parse(expr).unwrap();
        e.eval(&|r| hits.iter().find(|(n, _)| *n == r).map_or(0.0, |(_, v)| *v))
    }

    #[test]
    fn perl_precedence_and_values() {
        let hits = [("A", 1.0), ("B", 0.0), ("C", 1.0), ("M", 3.0)];
        let cases = [
            ("A && B", 0.0),
            ("A || B", 1.0),
            ("A && !B", 1.0),
            ("!A || C && B", 0.0),
            ("(A + B + C) > 1", 1.0),
            ("A + B + C > 2", 0.0),
            ("M >= 3 && A", 1.0),
            ("M * 2 - 1 == 5", 1.0),
            ("UNKNOWN", 0.0),
            ("0", 0.0),
            ("M / 0", 0.0),
            ("-A + 2", 1.0),
        ];
        for (expr, want) in cases {
            assert_eq!(eval(expr, &hits), want, "{expr}");
        }
    }

    #[test]
    fn malformed_expressions_are_refused() {
        for bad in ["A &&", "(A", "A B", "A = B", "A ) B", "$A", ""] {
            assert!(MetaExpr::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}A{}", "(".repeat(1000), ")".repeat(1000));
        assert!(MetaExpr::parse(&deep).is_err());
    }
}
