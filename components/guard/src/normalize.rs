//! Text normalisation in front of the injection detector.
//!
//! Attackers dress up "ignore previous instructions" in many ways: full-width
//! letters, zero-width characters between letters, Cyrillic look-alikes,
//! spaced-out letters, traditional Chinese. [`normalize`] folds all of that
//! into one plain, lower-case form, and counts the tricks it undid, so the
//! detector can flag the tricks themselves as `obfuscation`.
//!
//! Everything here is a single pass over `char`s with `match` tables: nothing
//! is built at run time.

/// The folded text plus what the folding had to undo.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Lower-case, folded text. Newlines are kept (they end sentences); other
    /// whitespace becomes a plain space.
    pub text: String,
    /// Unicode tag characters (U+E0000..U+E007F) outside emoji flag sequences.
    pub tag_chars: u32,
    /// Invisible characters hidden inside words, plus variation selectors
    /// from the supplement block (used to smuggle bytes behind an emoji).
    pub hidden: u32,
    /// Cyrillic or Greek look-alike letters written next to Latin letters.
    pub homoglyphs: u32,
}

/// Folds `input` for detection (see the module docs).
pub fn normalize(input: &str) -> Normalized {
    let mut out: Vec<char> = Vec::with_capacity(input.len() + 8);
    let mut n = Normalized::default();
    // ASCII text smuggled in tag characters is decoded and scanned too.
    let mut smuggled = String::new();
    let mut pending_invisible = 0u32;
    let mut in_flag = false;
    let mut prev_src: Option<char> = None;

    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        // Hot paths: plain ASCII and CJK ideographs.
        if pending_invisible == 0 {
            if c.is_ascii() {
                out.push(match c {
                    '\n' | '\r' => '\n',
                    '\t' | '\x0b' | '\x0c' => ' ',
                    c => c.to_ascii_lowercase(),
                });
                in_flag = false;
                prev_src = Some(c);
                continue;
            }
            if is_cjk(c) {
                out.push(simplify(c));
                in_flag = false;
                prev_src = Some(c);
                continue;
            }
        }
        let cp = c as u32;
        if (0xE0000..=0xE007F).contains(&cp) {
            // Emoji flags of subdivisions (🏴 + tag letters + cancel tag) are legitimate.
            if in_flag || prev_src == Some('\u{1F3F4}') {
                in_flag = cp != 0xE007F;
            } else {
                n.tag_chars += 1;
                if let Some(a) = char::from_u32(cp - 0xE0000).filter(|a| (' '..='~').contains(a)) {
                    smuggled.push(a);
                }
            }
            prev_src = Some(c);
            continue;
        }
        in_flag = false;
        if is_invisible(c) {
            if (0xE0100..=0xE01EF).contains(&cp) {
                n.hidden += 1;
            } else if !(0xFE00..=0xFE0F).contains(&cp) {
                pending_invisible += 1;
            }
            continue;
        }
        if pending_invisible > 0 {
            let prev_word = out.last().is_some_and(|&p| is_latin_or_cjk(p));
            if prev_word && is_latin_or_cjk(fold_width(c)) {
                n.hidden += pending_invisible;
            }
            pending_invisible = 0;
        }
        let prev = prev_src.map(fold_width);
        prev_src = Some(c);

        let c = fold_width(c);
        match c {
            '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => {
                out.push('\n');
                continue;
            }
            c if c.is_whitespace() => {
                out.push(' ');
                continue;
            }
            _ => {}
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        for l in c.to_lowercase() {
            if let Some(h) = homoglyph(l) {
                // Compare with the original neighbours: all-Cyrillic words are fine.
                let next = chars.peek().copied().map(fold_width);
                let latin = |x: Option<char>| x.is_some_and(|x| x.is_ascii_alphabetic());
                if latin(prev) || latin(next) {
                    n.homoglyphs += 1;
                }
                out.push(h);
            } else if is_cjk(l) {
                out.push(simplify(l));
            } else {
                out.push(l);
            }
        }
    }
    if !smuggled.is_empty() {
        out.push('\n');
        out.extend(smuggled.chars().map(|c| c.to_ascii_lowercase()));
    }
    n.text = collapse_spaced(&out);
    n
}

/// Folds one character for phrase matching on output (hijack markers):
/// full-width forms, lower case (ASCII and Cyrillic/Greek look-alikes),
/// traditional → simplified Chinese, any whitespace → `' '`. Invisible
/// characters give `None` (they are dropped).
pub fn fold_char(c: char) -> Option<char> {
    if c.is_ascii() {
        return Some(if c.is_ascii_whitespace() {
            ' '
        } else {
            c.to_ascii_lowercase()
        });
    }
    if is_invisible(c) {
        return None;
    }
    let c = fold_width(c);
    if c.is_whitespace() {
        return Some(' ');
    }
    if is_cjk(c) {
        return Some(simplify(c));
    }
    let l = c.to_lowercase().next().unwrap_or(c);
    Some(homoglyph(l).unwrap_or(l))
}

/// Zero-width and other invisible format characters that are dropped.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// Letters whose neighbours make a hidden invisible character suspicious.
fn is_latin_or_cjk(c: char) -> bool {
    c.is_ascii_alphanumeric() || is_cjk(c)
}

/// CJK ideographs (the scripts the Chinese rules look at).
#[inline(always)]
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// NFKC-like folding of full-width forms, styled letters and punctuation.
fn fold_width(c: char) -> char {
    let cp = c as u32;
    let shifted = |base: u32, first: u32| char::from_u32(first + (cp - base)).unwrap_or(c);
    match cp {
        0xFF01..=0xFF5E => shifted(0xFF01, 0x21),
        0x3000 => ' ',
        // Mathematical alphanumeric letters: 13 alphabets of 52 letters (A-Z, a-z).
        0x1D400..=0x1D6A3 => {
            let k = (cp - 0x1D400) % 52;
            char::from_u32(if k < 26 { 0x41 + k } else { 0x61 + k - 26 }).unwrap_or(c)
        }
        0x1D7CE..=0x1D7FF => char::from_u32(0x30 + (cp - 0x1D7CE) % 10).unwrap_or(c),
        0x24B6..=0x24CF => shifted(0x24B6, 0x61),
        0x24D0..=0x24E9 => shifted(0x24D0, 0x61),
        0x249C..=0x24B5 => shifted(0x249C, 0x61),
        0x1F1E6..=0x1F1FF => shifted(0x1F1E6, 0x61),
        0x2018 | 0x2019 | 0x201A | 0x201B | 0x2032 | 0x0060 | 0x00B4 => '\'',
        0x201C | 0x201D | 0x201E | 0x201F | 0x2033 | 0x00AB | 0x00BB | 0x300C..=0x300F => '"',
        0x2010 | 0x2011 | 0x2012 | 0x2013 | 0x2212 => '-',
        0x2014 | 0x2015 => ' ',
        0x3002 | 0xFF61 => '.',
        0x3001 => ',',
        _ => c,
    }
}

/// Cyrillic and Greek lower-case letters that look like Latin ones.
fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'ε' => 'e',
        'ɡ' => 'g',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ι' | 'ı' => 'i',
        'ј' | 'ϳ' => 'j',
        'к' | 'κ' => 'k',
        'ӏ' | 'ℓ' => 'l',
        'м' => 'm',
        'η' | 'п' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'ζ' => 'z',
        _ => return None,
    })
}

/// Traditional → simplified Chinese for the characters the rules use.
fn simplify(c: char) -> char {
    let k = (c as u32).wrapping_sub(0x4E00) as usize;
    if k >= 0x5200 || TRAD_BITS[k / 8] & (1 << (k % 8)) == 0 {
        return c;
    }
    match TRAD_SIMP.binary_search_by_key(&c, |&(t, _)| t) {
        Ok(i) => TRAD_SIMP[i].1,
        Err(_) => c,
    }
}

/// One bit per ideograph in U+4E00..U+A000: set for the keys of [`TRAD_SIMP`].
static TRAD_BITS: [u8; 0x5200 / 8] = {
    let mut bits = [0u8; 0x5200 / 8];
    let mut i = 0;
    while i < TRAD_SIMP.len() {
        let k = TRAD_SIMP[i].0 as usize - 0x4E00;
        bits[k / 8] |= 1 << (k % 8);
        i += 1;
    }
    bits
};

/// Sorted by the traditional character (checked by a test).
static TRAD_SIMP: &[(char, char)] = &[
    ('並', '并'),
    ('來', '来'),
    ('係', '系'),
    ('俠', '侠'),
    ('個', '个'),
    ('們', '们'),
    ('倫', '伦'),
    ('偽', '伪'),
    ('傳', '传'),
    ('傷', '伤'),
    ('僅', '仅'),
    ('價', '价'),
    ('儘', '尽'),
    ('優', '优'),
    ('兒', '儿'),
    ('內', '内'),
    ('兩', '两'),
    ('別', '别'),
    ('則', '则'),
    ('剛', '刚'),
    ('創', '创'),
    ('劇', '剧'),
    ('動', '动'),
    ('務', '务'),
    ('勢', '势'),
    ('區', '区'),
    ('員', '员'),
    ('問', '问'),
    ('啟', '启'),
    ('嗎', '吗'),
    ('噹', '当'),
    ('嚴', '严'),
    ('執', '执'),
    ('場', '场'),
    ('壞', '坏'),
    ('學', '学'),
    ('實', '实'),
    ('審', '审'),
    ('寫', '写'),
    ('將', '将'),
    ('專', '专'),
    ('對', '对'),
    ('導', '导'),
    ('幫', '帮'),
    ('彙', '汇'),
    ('後', '后'),
    ('從', '从'),
    ('復', '复'),
    ('惡', '恶'),
    ('愛', '爱'),
    ('態', '态'),
    ('慮', '虑'),
    ('憂', '忧'),
    ('憑', '凭'),
    ('憤', '愤'),
    ('應', '应'),
    ('懷', '怀'),
    ('戰', '战'),
    ('戲', '戏'),
    ('換', '换'),
    ('損', '损'),
    ('搶', '抢'),
    ('擇', '择'),
    ('據', '据'),
    ('擬', '拟'),
    ('擺', '摆'),
    ('敵', '敌'),
    ('數', '数'),
    ('斷', '断'),
    ('於', '于'),
    ('時', '时'),
    ('暫', '暂'),
    ('曉', '晓'),
    ('書', '书'),
    ('會', '会'),
    ('東', '东'),
    ('條', '条'),
    ('業', '业'),
    ('標', '标'),
    ('樣', '样'),
    ('機', '机'),
    ('權', '权'),
    ('歷', '历'),
    ('殺', '杀'),
    ('毀', '毁'),
    ('氣', '气'),
    ('沒', '没'),
    ('況', '况'),
    ('洩', '泄'),
    ('減', '减'),
    ('測', '测'),
    ('準', '准'),
    ('溝', '沟'),
    ('滅', '灭'),
    ('滿', '满'),
    ('漢', '汉'),
    ('潛', '潜'),
    ('濾', '滤'),
    ('為', '为'),
    ('無', '无'),
    ('燒', '烧'),
    ('獄', '狱'),
    ('獨', '独'),
    ('獲', '获'),
    ('現', '现'),
    ('環', '环'),
    ('產', '产'),
    ('畫', '画'),
    ('當', '当'),
    ('疊', '叠'),
    ('療', '疗'),
    ('發', '发'),
    ('盡', '尽'),
    ('監', '监'),
    ('確', '确'),
    ('碼', '码'),
    ('禦', '御'),
    ('禮', '礼'),
    ('種', '种'),
    ('稱', '称'),
    ('穩', '稳'),
    ('窮', '穷'),
    ('競', '竞'),
    ('筆', '笔'),
    ('節', '节'),
    ('範', '范'),
    ('簡', '简'),
    ('糧', '粮'),
    ('約', '约'),
    ('紅', '红'),
    ('純', '纯'),
    ('紙', '纸'),
    ('級', '级'),
    ('紛', '纷'),
    ('細', '细'),
    ('終', '终'),
    ('組', '组'),
    ('結', '结'),
    ('絕', '绝'),
    ('絡', '络'),
    ('給', '给'),
    ('統', '统'),
    ('絲', '丝'),
    ('綁', '绑'),
    ('經', '经'),
    ('綜', '综'),
    ('維', '维'),
    ('網', '网'),
    ('綴', '缀'),
    ('緊', '紧'),
    ('緒', '绪'),
    ('線', '线'),
    ('編', '编'),
    ('緩', '缓'),
    ('練', '练'),
    ('縱', '纵'),
    ('總', '总'),
    ('繞', '绕'),
    ('繫', '系'),
    ('續', '续'),
    ('罰', '罚'),
    ('義', '义'),
    ('習', '习'),
    ('聲', '声'),
    ('職', '职'),
    ('聽', '听'),
    ('脫', '脱'),
    ('腦', '脑'),
    ('膽', '胆'),
    ('臺', '台'),
    ('與', '与'),
    ('舊', '旧'),
    ('著', '着'),
    ('蓋', '盖'),
    ('藥', '药'),
    ('蘭', '兰'),
    ('處', '处'),
    ('虛', '虚'),
    ('號', '号'),
    ('蟲', '虫'),
    ('術', '术'),
    ('衛', '卫'),
    ('衝', '冲'),
    ('補', '补'),
    ('裝', '装'),
    ('裡', '里'),
    ('製', '制'),
    ('複', '复'),
    ('見', '见'),
    ('規', '规'),
    ('視', '视'),
    ('覺', '觉'),
    ('覽', '览'),
    ('觀', '观'),
    ('訂', '订'),
    ('計', '计'),
    ('討', '讨'),
    ('訓', '训'),
    ('託', '托'),
    ('記', '记'),
    ('訪', '访'),
    ('設', '设'),
    ('許', '许'),
    ('訴', '诉'),
    ('註', '注'),
    ('詐', '诈'),
    ('評', '评'),
    ('詞', '词'),
    ('詢', '询'),
    ('試', '试'),
    ('話', '话'),
    ('該', '该'),
    ('詳', '详'),
    ('認', '认'),
    ('誘', '诱'),
    ('語', '语'),
    ('誠', '诚'),
    ('誤', '误'),
    ('說', '说'),
    ('課', '课'),
    ('調', '调'),
    ('談', '谈'),
    ('請', '请'),
    ('論', '论'),
    ('諾', '诺'),
    ('謀', '谋'),
    ('謂', '谓'),
    ('謊', '谎'),
    ('講', '讲'),
    ('謝', '谢'),
    ('證', '证'),
    ('識', '识'),
    ('譯', '译'),
    ('議', '议'),
    ('護', '护'),
    ('讀', '读'),
    ('變', '变'),
    ('讓', '让'),
    ('豐', '丰'),
    ('貓', '猫'),
    ('貝', '贝'),
    ('負', '负'),
    ('財', '财'),
    ('貨', '货'),
    ('販', '贩'),
    ('貪', '贪'),
    ('責', '责'),
    ('貴', '贵'),
    ('買', '买'),
    ('費', '费'),
    ('資', '资'),
    ('賊', '贼'),
    ('賣', '卖'),
    ('賭', '赌'),
    ('賴', '赖'),
    ('贊', '赞'),
    ('趕', '赶'),
    ('跡', '迹'),
    ('蹤', '踪'),
    ('軍', '军'),
    ('軟', '软'),
    ('較', '较'),
    ('輕', '轻'),
    ('輯', '辑'),
    ('輸', '输'),
    ('轉', '转'),
    ('辦', '办'),
    ('農', '农'),
    ('這', '这'),
    ('連', '连'),
    ('進', '进'),
    ('遊', '游'),
    ('運', '运'),
    ('過', '过'),
    ('違', '违'),
    ('遞', '递'),
    ('遠', '远'),
    ('適', '适'),
    ('選', '选'),
    ('遺', '遗'),
    ('還', '还'),
    ('邊', '边'),
    ('郵', '邮'),
    ('醫', '医'),
    ('釋', '释'),
    ('針', '针'),
    ('鈕', '钮'),
    ('銀', '银'),
    ('銷', '销'),
    ('鋒', '锋'),
    ('錄', '录'),
    ('錢', '钱'),
    ('錯', '错'),
    ('鍵', '键'),
    ('鎖', '锁'),
    ('鏡', '镜'),
    ('長', '长'),
    ('門', '门'),
    ('閉', '闭'),
    ('開', '开'),
    ('間', '间'),
    ('閱', '阅'),
    ('闖', '闯'),
    ('關', '关'),
    ('陣', '阵'),
    ('陸', '陆'),
    ('陽', '阳'),
    ('隊', '队'),
    ('階', '阶'),
    ('際', '际'),
    ('隨', '随'),
    ('險', '险'),
    ('隱', '隐'),
    ('隻', '只'),
    ('雙', '双'),
    ('雜', '杂'),
    ('雞', '鸡'),
    ('離', '离'),
    ('難', '难'),
    ('雲', '云'),
    ('電', '电'),
    ('靈', '灵'),
    ('靜', '静'),
    ('響', '响'),
    ('頁', '页'),
    ('頂', '顶'),
    ('項', '项'),
    ('順', '顺'),
    ('須', '须'),
    ('預', '预'),
    ('領', '领'),
    ('頭', '头'),
    ('頻', '频'),
    ('題', '题'),
    ('額', '额'),
    ('顏', '颜'),
    ('願', '愿'),
    ('類', '类'),
    ('顯', '显'),
    ('風', '风'),
    ('飛', '飞'),
    ('飯', '饭'),
    ('館', '馆'),
    ('馬', '马'),
    ('騙', '骗'),
    ('驗', '验'),
    ('體', '体'),
    ('髮', '发'),
    ('鬥', '斗'),
    ('魚', '鱼'),
    ('鳥', '鸟'),
    ('麗', '丽'),
    ('麼', '么'),
    ('點', '点'),
    ('黨', '党'),
    ('齊', '齐'),
    ('龍', '龙'),
    ('龜', '龟'),
];

/// Joins runs of single characters separated by one separator:
/// "i g n o r e" → "ignore", "i.g.n.o.r.e" → "ignore", "忽 略" → "忽略".
/// Latin runs need three or more characters; CJK runs need two.
fn collapse_spaced(chars: &[char]) -> String {
    let n = chars.len();
    let word = |c: char| {
        if c.is_ascii() {
            c.is_ascii_alphanumeric()
        } else {
            is_cjk(c) || c.is_alphanumeric()
        }
    };
    let is_sep = |c: char| matches!(c, ' ' | '.' | '-' | '_' | '*');
    // A one-character word at `i` (the caller knows `chars[i + 1]` is a separator).
    let single_before_sep = |i: usize| word(chars[i]) && (i == 0 || !word(chars[i - 1]));
    let single = |i: usize| single_before_sep(i) && (i + 1 == n || !word(chars[i + 1]));
    // Bytes, not `String::push`: most characters are ASCII.
    let mut out: Vec<u8> = Vec::with_capacity(n + n / 2);
    let put = |out: &mut Vec<u8>, c: char| {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    };
    let mut i = 0;
    while i < n {
        // Cheapest test first: most characters are not followed by a separator.
        if i + 2 < n && is_sep(chars[i + 1]) && single_before_sep(i) {
            let sep = chars[i + 1];
            let mut j = i;
            let mut count = 1;
            let mut all_cjk = is_cjk(chars[i]);
            while j + 2 < n && chars[j + 1] == sep && single(j + 2) {
                j += 2;
                count += 1;
                all_cjk &= is_cjk(chars[j]);
            }
            let min = if all_cjk && sep == ' ' { 2 } else { 3 };
            if count >= min {
                for k in (i..=j).step_by(2) {
                    put(&mut out, chars[k]);
                }
                i = j + 1;
                continue;
            }
        }
        put(&mut out, chars[i]);
        i += 1;
    }
    // Always valid: built from whole characters.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trad_table_sorted_and_unique() {
        let mut v: Vec<char> = TRAD_SIMP.iter().map(|p| p.0).collect();
        let sorted = {
            let mut s = v.clone();
            s.sort();
            s
        };
        assert_eq!(v, sorted, "TRAD_SIMP must be sorted");
        v.dedup();
        assert_eq!(v.len(), TRAD_SIMP.len(), "TRAD_SIMP has duplicates");
    }

    #[test]
    fn folds() {
        assert_eq!(normalize("ｉｇｎｏｒｅ ＡＬＬ").text, "ignore all");
        assert_eq!(normalize("i g n o r e previous").text, "ignore previous");
        assert_eq!(normalize("I.G.N.O.R.E it").text, "ignore it");
        assert_eq!(normalize("忽 略 之 前").text, "忽略之前");
        assert_eq!(normalize("忽視規則").text, "忽视规则");
        assert_eq!(normalize("a b").text, "a b");
        assert_eq!(normalize("I am a cat").text, "i am a cat");
        let n = normalize("ig\u{200B}no\u{200B}re al\u{200D}l");
        assert_eq!(n.text, "ignore all");
        assert_eq!(n.hidden, 3);
        let n = normalize("іgnоre"); // Cyrillic і and о
        assert_eq!(n.text, "ignore");
        assert_eq!(n.homoglyphs, 2);
        assert_eq!(normalize("Привет").homoglyphs, 0);
        assert_eq!(normalize("𝐢𝐠𝐧𝐨𝐫𝐞").text, "ignore");
        let n = normalize("hi\u{E0069}\u{E0067}");
        assert_eq!(n.tag_chars, 2);
        assert!(n.text.ends_with("\nig"));
        // A subdivision flag is not obfuscation.
        let n = normalize("🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} go");
        assert_eq!(n.tag_chars, 0);
        // ZWJ inside an emoji sequence is not hidden text.
        assert_eq!(normalize("👨\u{200D}👩\u{200D}👧").hidden, 0);
    }
}
