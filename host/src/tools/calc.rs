//! `calculator`: exact rational arithmetic over `+ - * / ^ ( )` and decimal
//! literals. A parser, never an `eval`.

use std::fmt;

/// A rational number in lowest terms, denominator > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ratio {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl Ratio {
    fn new(num: i128, den: i128) -> Result<Self, String> {
        if den == 0 {
            return Err("division by zero".into());
        }
        let g = gcd(num, den);
        let sign = if den < 0 { -1 } else { 1 };
        Ok(Self {
            num: sign * num / g,
            den: sign * den / g,
        })
    }
    fn int(n: i128) -> Self {
        Self { num: n, den: 1 }
    }
    fn add(self, o: Self) -> Result<Self, String> {
        let num = self
            .num
            .checked_mul(o.den)
            .and_then(|a| o.num.checked_mul(self.den).and_then(|b| a.checked_add(b)));
        let den = self.den.checked_mul(o.den);
        match (num, den) {
            (Some(n), Some(d)) => Self::new(n, d),
            _ => Err(OVERFLOW.into()),
        }
    }
    fn neg(self) -> Self {
        Self {
            num: -self.num,
            den: self.den,
        }
    }
    fn mul(self, o: Self) -> Result<Self, String> {
        match (self.num.checked_mul(o.num), self.den.checked_mul(o.den)) {
            (Some(n), Some(d)) => Self::new(n, d),
            _ => Err(OVERFLOW.into()),
        }
    }
    fn div(self, o: Self) -> Result<Self, String> {
        if o.num == 0 {
            return Err("division by zero".into());
        }
        self.mul(Self {
            num: o.den,
            den: o.num,
        })
    }
    fn pow(self, e: Self) -> Result<Self, String> {
        if e.den != 1 || e.num.abs() > 256 {
            return Err("exponents must be integers between -256 and 256".into());
        }
        let mut acc = Self::int(1);
        for _ in 0..e.num.abs() {
            acc = acc.mul(self)?;
        }
        if e.num < 0 {
            Self::int(1).div(acc)
        } else {
            Ok(acc)
        }
    }
}

const OVERFLOW: &str = "number too large for exact arithmetic";

impl fmt::Display for Ratio {
    /// An integer, a terminating decimal, or `a/b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            return write!(f, "{}", self.num);
        }
        let (mut d, mut twos, mut fives) = (self.den, 0u32, 0u32);
        while d % 2 == 0 {
            d /= 2;
            twos += 1;
        }
        while d % 5 == 0 {
            d /= 5;
            fives += 1;
        }
        let digits = twos.max(fives);
        if d == 1 && digits <= 30 {
            let scale = 10i128.pow(digits);
            if let Some(scaled) = self.num.checked_mul(scale / self.den) {
                let sign = if scaled < 0 { "-" } else { "" };
                let a = scaled.unsigned_abs();
                let p = 10u128.pow(digits);
                let frac = format!("{:0width$}", a % p, width = digits as usize);
                return write!(f, "{sign}{}.{}", a / p, frac.trim_end_matches('0'));
            }
        }
        write!(f, "{}/{}", self.num, self.den)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }
    fn expr(&mut self) -> Result<Ratio, String> {
        let mut v = self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.term()?;
            v = if c == b'+' {
                v.add(r)?
            } else {
                v.add(r.neg())?
            };
        }
        Ok(v)
    }
    fn term(&mut self) -> Result<Ratio, String> {
        let mut v = self.unary()?;
        while let Some(c @ (b'*' | b'/' | b'x' | b'%')) = self.peek() {
            if c == b'%' {
                return Err("`%` is not supported".into());
            }
            self.i += 1;
            let r = self.unary()?;
            v = if c == b'/' { v.div(r)? } else { v.mul(r)? };
        }
        Ok(v)
    }
    fn unary(&mut self) -> Result<Ratio, String> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                Ok(self.unary()?.neg())
            }
            Some(b'+') => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }
    fn power(&mut self) -> Result<Ratio, String> {
        let base = self.atom()?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let e = self.unary()?;
            return base.pow(e);
        }
        Ok(base)
    }
    fn atom(&mut self) -> Result<Ratio, String> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek() != Some(b')') {
                    return Err("missing `)`".into());
                }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(c) => Err(format!(
                "unexpected `{}` at position {}",
                c as char,
                self.i + 1
            )),
            None => Err("unexpected end of expression".into()),
        }
    }
    fn number(&mut self) -> Result<Ratio, String> {
        let (mut num, mut den, mut seen_dot, mut any) = (0i128, 1i128, false, false);
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'0'..=b'9' => {
                    num = num
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(i128::from(c - b'0')))
                        .ok_or(OVERFLOW)?;
                    if seen_dot {
                        den = den.checked_mul(10).ok_or(OVERFLOW)?;
                    }
                    any = true;
                }
                b'.' if !seen_dot => seen_dot = true,
                b'_' | b',' => {}
                _ => break,
            }
            self.i += 1;
        }
        if !any {
            return Err("a number needs digits".into());
        }
        Ratio::new(num, den)
    }
}

/// Evaluates `expression` exactly.
pub fn evaluate(expression: &str) -> Result<String, String> {
    if expression.len() > 512 {
        return Err("expression longer than 512 characters".into());
    }
    let mut p = Parser {
        s: expression.as_bytes(),
        i: 0,
    };
    let v = p.expr()?;
    if p.peek().is_some() {
        return Err(format!("unexpected input at position {}", p.i + 1));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::evaluate;

    #[test]
    fn exact_results() {
        assert_eq!(evaluate("0.1 + 0.2").unwrap(), "0.3");
        assert_eq!(evaluate("2*(3+4)/7").unwrap(), "2");
        assert_eq!(evaluate("1/3").unwrap(), "1/3");
        assert_eq!(evaluate("-2^3").unwrap(), "-8");
        assert_eq!(evaluate("2^-2").unwrap(), "0.25");
        assert_eq!(evaluate("1,000 * 3").unwrap(), "3000");
        assert_eq!(evaluate("10/4").unwrap(), "2.5");
    }

    #[test]
    fn errors_not_panics() {
        assert!(evaluate("1/0").is_err());
        assert!(evaluate("2^1000000").is_err());
        assert!(evaluate("import os").is_err());
        assert!(evaluate("(1+2").is_err());
        assert!(evaluate("").is_err());
        assert!(evaluate(&"9".repeat(60)).is_err());
        assert!(evaluate("99999999999999999^9").is_err());
    }
}
