//! The detection rules: keyword classes and phrase patterns.
//!
//! Every pattern is a `const` string parsed **at compile time** into word ids
//! and class masks (see [`crate::engine`]), so nothing is built per request.
//!
//! Pattern syntax (items separated by spaces):
//! - `word` or `a|b|c`: one token, one of these words (or Chinese keywords);
//! - `@class`: one token of a keyword class from [`CLASS_DEFS`] (`@a|@b|word` mixes);
//! - `~N`: up to N other tokens may come before the next item (never across
//!   a sentence end).
//!
//! A token is an English word (lower-cased, apostrophes dropped: `don't` →
//! `dont`), a Chinese keyword from [`crate::words::WORDS`] (longest match) or
//! a single other CJK character, or one of `:` `"` `.` (sentence end).
//!
//! Each matching pattern adds its weight `w`; weights combine as a noisy OR,
//! `1 - Π(1 - w)`, and a message is blocked at [`crate::detect::THRESHOLD`] (0.5).
//! So a pattern with `w ≥ 0.5` blocks on its own, and weaker ones need company.
//! `pat(..).group("name")` makes alternatives of one signal count once.
//!
//! After "my"/"our", the context classes `ctxp`, `ctxa` and `ctxw` are
//! dropped from the next word (and from the word before): "ignore my
//! previous instructions" is a user correcting themselves, not an attack.
//!
//! The numbers were tuned on the shared dev set while keeping every rule a
//! general phrase shape (no rows were copied); `tests/dev_set.rs` prints the
//! recall and false-positive rate, and `GUARD_ADHOC=file` scores any lines.

use crate::detect::Category::{self, *};
use crate::engine::{Pat, pat};

/// Keyword classes: `(name, space-separated members)`. Bit `i` is class `i`.
/// Every member must be in [`crate::words::WORDS`] (checked at compile time).
pub const CLASS_DEFS: &[(&str, &str)] = &[
    (
        "ign",
        "ignore ignoring ignored ignores disregard disregarding disregarded forget forgetting \
         forgot override overriding overwrite bypass bypassing skip skipping neglect discard \
         abandon erase",
    ),
    // "Earlier" context. After "my"/"our" these words lose their class (see
    // `engine::Scan::new`): "ignore my previous instructions" is a user
    // correcting themselves.
    (
        "ctxp",
        "previous prior above earlier preceding preceeding foregoing aforementioned previously",
    ),
    // Weaker context words.
    (
        "ctxw",
        "former original initial old past existing preset default starting current given",
    ),
    // ("any" is left out: "ignore any instructions in the e-mail" is a defence.)
    ("ctxa", "all every everything"),
    ("ctxo", "your system developer developers openai openais"),
    (
        "instr",
        "instruction instructions directive directives prompt prompts guideline guidelines \
         programming direction directions orders command commands context constraints \
         constraint training input inputs prompting information info",
    ),
    (
        "restr",
        "restrictions restriction limitations limitation policies policy guardrails guardrail \
         filters filter safeguards safeguard censorship safety ethics morals prohibitions",
    ),
    ("rules", "rule rules"),
    (
        "question",
        "question questions problem problems query queries request requests task tasks statement",
    ),
    (
        "say",
        "output outputs print say reply respond answer repeat rephrase paraphrase write type \
         enter state return recite echo tell recap",
    ),
    (
        "direct",
        "just directly simply only immediately straight instead",
    ),
    (
        "reveal",
        "reveal print show display output repeat tell give dump leak share disclose list echo \
         return recite spell copy provide expose see read log console paste",
    ),
    (
        "sys",
        "system initial original hidden secret internal developer pre initialization \
         starting underlying confidential",
    ),
    (
        "pn",
        "prompt prompts instructions instruction configuration config directives rules",
    ),
    ("msg", "message messages string"),
    (
        "replyn",
        "output outputs response responses answer answers message messages reply replies \
         sentence sentences",
    ),
    (
        "whole",
        "your entire full complete exact whole everything original",
    ),
    (
        "transform",
        "translate encode convert summarize summarise rewrite rephrase paraphrase spell reverse",
    ),
    (
        "caveat",
        "warnings warning disclaimers disclaimer censoring censorship filtering apologies \
         apologizing hesitation",
    ),
    (
        "syspn",
        "systemprompt sysprompt preprompt systemmessage initialprompt",
    ),
    (
        "freeadj",
        "unfiltered uncensored unrestricted unrestrained unlimited unbound unbounded limitless \
         unhinged uninhibited unconstrained unmoderated",
    ),
    (
        "bad",
        "immoral unethical illegal dangerous harmful offensive inappropriate explicit reckless \
         inhumane amoral unsafe nsfw",
    ),
    (
        "edgy",
        "evil toxic profanity profanities swear swears swearing curse cursing vulgar vulgarity \
         slurs rude racist sexist hateful obscene",
    ),
    (
        "ethic",
        "ethical moral ethics morals morality legal legality ethicality legally morally ethically",
    ),
    ("brand", "chatgpt openai openais gpt gpt4 gpt3 llm chatbot"),
    ("aiw", "ai chatbot bot assistant model gpt chatgpt llm"),
    (
        "neg",
        "dont not no never without nor doesnt cant cannot wont none neither isnt arent",
    ),
    (
        "fluff",
        "words notes punctuation quotes quotation prefix prefixes symbols",
    ),
    // Chinese.
    (
        "zign",
        "忽略 无视 忘记 忘掉 忘了 跳过 不要理会 不用理会 不理会 别管 不要管 抛开 抛弃 放弃 \
         绕过 忽视 不要遵守 不再遵守 不必遵守 覆盖",
    ),
    (
        "zctx",
        "之前 以上 上面 上述 先前 所有 前面 此前 原来 原有 原先 一切 全部 你的 我的 该 此 \
         这个 这些 刚才 系统 前述 上文",
    ),
    (
        "zinstr",
        "指令 指示 规则 提示 设定 要求 命令 约束 限制 提示词 说明 规定 指导 准则",
    ),
    ("zques", "问题 提问"),
    (
        "zsay",
        "输出 复述 回复 回覆 回答 说 重复 输入 打印 写 说出 转述",
    ),
    (
        "zreveal",
        "输出 告诉我 显示 打印 重复 复述 泄露 透露 给我看 说出 展示 公开 发给我 列出 写出 提供",
    ),
];

/// All phrase patterns.
pub static PATTERNS: &[Pat] = &[
    // ── instruction override ────────────────────────────────────────────
    pat(
        InstructionOverride,
        0.9,
        "@ign ~5 @ctxp|@ctxa|@ctxo ~4 @instr",
    )
    .group("ovr"),
    pat(InstructionOverride, 0.35, "@ign ~5 @ctxw ~4 @instr|@rules").group("ovr"),
    pat(
        InstructionOverride,
        0.85,
        "@ign ~3 @instr|@question|@rules ~3 above|earlier|previously",
    ),
    pat(InstructionOverride, 0.9, "@ign ~5 @ctxp|@ctxo ~3 @rules").group("ovr"),
    pat(InstructionOverride, 0.45, "@ign ~3 all ~2 @rules"),
    pat(InstructionOverride, 0.6, "@ign ~4 @ctxp|your ~3 @restr"),
    pat(InstructionOverride, 0.8, "@ign ~4 @ctxp ~3 @question"),
    pat(
        InstructionOverride,
        0.5,
        "@ign this|that|these|those @instr|@question",
    ),
    pat(InstructionOverride, 0.4, "@ign my @instr|@question"),
    pat(InstructionOverride, 0.4, "@ign the @instr|@question"),
    pat(
        InstructionOverride,
        0.8,
        "@ign ~2 everything|anything ~1 before|above|previous|prior|earlier|previously|until",
    ),
    pat(
        InstructionOverride,
        0.45,
        "@ign ~2 everything|anything ~4 said|told|instructed",
    ),
    pat(
        InstructionOverride,
        0.4,
        "forget|ignore|disregard everything|all ~2 you ~1 know|learned|were",
    ),
    pat(
        InstructionOverride,
        0.5,
        "forget|ignore|disregard ~2 everything|all ~3 @brand|@aiw|chat",
    ),
    pat(
        InstructionOverride,
        0.55,
        "@ign ~1 above|preceding|foregoing|aforementioned",
    ),
    pat(
        InstructionOverride,
        0.7,
        "@ign ~2 all|any|everything|the ~2 text|content|words|messages ~2 before|above|previously|earlier",
    ),
    pat(
        InstructionOverride,
        0.3,
        "forget ~1 about ~1 it|them|that|this|those",
    ),
    pat(
        InstructionOverride,
        0.7,
        "@neg ~2 follow|obey|adhere|comply|abide ~4 @ctxp|@ctxw|@ctxo ~3 @instr|@rules|@restr",
    ),
    pat(
        InstructionOverride,
        0.25,
        "new|updated|revised instructions|directives|orders|tasks",
    ),
    pat(
        InstructionOverride,
        0.45,
        "new|updated|revised|real|actual|true instructions|task|directives|orders ~3 :",
    ),
    pat(InstructionOverride, 0.4, "instead ~3 @say ~3 :|\""),
    pat(
        InstructionOverride,
        0.4,
        "instead ~1 of ~2 translating|answering|responding|summarizing|replying ~4 @say",
    ),
    pat(
        InstructionOverride,
        0.45,
        "now|instead ~2 your task|job|goal|mission|objective",
    ),
    pat(
        InstructionOverride,
        0.35,
        "your new task|job|goal|mission|objective",
    ),
    pat(
        InstructionOverride,
        0.45,
        "your task|job|goal|mission|objective ~1 now|instead",
    ),
    pat(
        InstructionOverride,
        0.4,
        "you ~1 now ~2 need|have|must|should ~2 @say ~2 :|\"",
    ),
    pat(
        InstructionOverride,
        0.55,
        "admin|administrator|sudo|root|developer|system override",
    ),
    pat(InstructionOverride, 0.6, "i have been pwned"),
    // Goal hijacking: "… just output: <text>".
    // (One group: only the strongest of these counts.)
    pat(InstructionOverride, 0.45, "@direct ~1 @say ~4 :|\"").group("direct"),
    pat(
        InstructionOverride,
        0.45,
        "@say ~3 directly|straight ~1 :|\"",
    )
    .group("direct"),
    pat(InstructionOverride, 0.3, "@direct ~1 @say").group("direct"),
    pat(InstructionOverride, 0.3, "@say ~3 directly").group("direct"),
    pat(
        InstructionOverride,
        0.4,
        "straight|directly ~1 to ~1 the ~1 output",
    )
    .group("direct"),
    pat(InstructionOverride, 0.25, "@say ~3 following ~3 :|\""),
    pat(
        InstructionOverride,
        0.3,
        "please ~1 repeat|rephrase|paraphrase|recite ~1 :",
    ),
    pat(InstructionOverride, 0.25, "repeat after me"),
    pat(InstructionOverride, 0.45, "do as i say|tell"),
    pat(
        InstructionOverride,
        0.3,
        "follow my instructions|orders|commands",
    ),
    pat(
        InstructionOverride,
        0.3,
        "do|follow ~3 say|instructions|orders|commands ~6 @say ~3 :|\"",
    ),
    // Answer forcing: asks for an opinion, then dictates the answer.
    pat(
        InstructionOverride,
        0.3,
        "think|believe|agree|consider ~15 . ~4 @say ~3 :|\"",
    ),
    pat(
        InstructionOverride,
        0.45,
        "@neg ~2 answer|respond|reply ~2 @say",
    ),
    pat(
        InstructionOverride,
        0.3,
        "@neg want ~2 hear|see ~4 other|another|any ~1 answer|answers|response|words|reply",
    ),
    pat(
        InstructionOverride,
        0.35,
        "when|whenever|if ~2 asked|prompted ~8 @say|with ~3 following|:",
    ),
    pat(
        InstructionOverride,
        0.3,
        "@neg ~3 add|additional|other|extra|include ~2 @fluff",
    ),
    pat(
        InstructionOverride,
        0.25,
        "@neg ~2 answer|answering|rush|choose|respond ~1 @direct|@say",
    ),
    // ── role hijack ─────────────────────────────────────────────────────
    pat(RoleHijack, 0.35, "you are now"),
    pat(RoleHijack, 0.35, "youre now"),
    pat(RoleHijack, 0.45, "from now on ~3 you|youre|your"),
    pat(RoleHijack, 0.25, "from now on"),
    pat(
        RoleHijack,
        0.45,
        "from this|that moment|point ~3 you|youre|your",
    ),
    pat(RoleHijack, 0.2, "@aiw|language ~3 called|named"),
    pat(
        RoleHijack,
        0.2,
        "you will ~1 act|play|pretend|roleplay|be|respond|answer",
    ),
    pat(
        RoleHijack,
        0.3,
        "you|youre ~2 going|gonna ~2 act|pretend|roleplay|simulate|emulate|impersonate|be",
    ),
    pat(RoleHijack, 0.2, "pretend ~1 be|you|youre"),
    pat(RoleHijack, 0.12, "act|acting|behave ~1 as|like"),
    pat(
        RoleHijack,
        0.15,
        "play|take|assume|adopt|playing ~2 role|part|persona|character",
    ),
    pat(RoleHijack, 0.35, "immerse|immersing yourself"),
    pat(
        RoleHijack,
        0.35,
        "stay|stays|remain|remains|keep|staying|remaining in character",
    ),
    pat(RoleHijack, 0.25, "break|breaking|broke ~1 character"),
    pat(RoleHijack, 0.45, "you are no longer"),
    pat(RoleHijack, 0.45, "youre no longer"),
    pat(RoleHijack, 0.6, "forget|ignore ~3 you ~1 are|were ~2 @aiw"),
    pat(
        RoleHijack,
        0.2,
        "you ~1 can|may|will|must|should ~1 only ~1 say|respond|reply|answer|speak|talk|use",
    ),
    pat(
        RoleHijack,
        0.3,
        "your ~1 new ~1 name|persona|identity|role|personality",
    ),
    pat(RoleHijack, 0.15, "which|that stands for"),
    pat(
        RoleHijack,
        0.25,
        "two|2 ~2 ways|manners|responses|personalities|personas|answers|paragraphs|outputs",
    ),
    pat(
        RoleHijack,
        0.25,
        "begin|start|prefix|precede|preface ~4 each|every|all|your ~2 @replyn ~2 with",
    ),
    pat(
        RoleHijack,
        0.08,
        "simulate|emulate|impersonate|roleplay|roleplaying|persona",
    ),
    pat(RoleHijack, 0.1, "play ~1 a ~1 game"),
    pat(RoleHijack, 0.2, "hi|hello|hey|dear ~1 @brand"),
    pat(
        RoleHijack,
        0.3,
        "your ~1 persona|role|character|identity ~1 is|will",
    ),
    // ── jailbreak ───────────────────────────────────────────────────────
    pat(Jailbreak, 0.9, "do ~1 anything now"),
    pat(Jailbreak, 0.6, "does|can|doing ~1 anything now"),
    pat(Jailbreak, 0.2, "developer|dev mode"),
    pat(
        Jailbreak,
        0.3,
        "developer|dev mode ~2 enabled|output|activated|policies|policy|response",
    ),
    pat(Jailbreak, 0.35, "@brand|@aiw ~4 developer|dev mode"),
    pat(
        Jailbreak,
        0.3,
        "enable|enabled|activate|enter|switch ~2 developer|dev mode",
    ),
    pat(Jailbreak, 0.3, "jailbroken"),
    pat(Jailbreak, 0.12, "jailbreak|jailbreaks|jailbreaking"),
    pat(
        Jailbreak,
        0.3,
        "no|without|free|zero ~3 @restr|@rules|limits|boundaries|guidelines|constraints|bounds|boundary",
    ),
    pat(
        Jailbreak,
        0.4,
        "free ~1 of|from ~2 all|any ~2 @restr|@rules|limits|constraints|guidelines",
    ),
    pat(
        Jailbreak,
        0.35,
        "not|never|isnt|arent|nor ~2 bound|restricted|limited|constrained|confined|restrained ~2 by",
    ),
    pat(
        Jailbreak,
        0.3,
        "@neg|any|regard|regardless|care|zero ~4 @ethic",
    ),
    pat(Jailbreak, 0.2, "@freeadj"),
    pat(Jailbreak, 0.3, "amoral"),
    pat(
        Jailbreak,
        0.3,
        "@neg ~3 refuse|refuses|refusing|deny|denies|decline|declines|reject",
    ),
    pat(Jailbreak, 0.45, "no matter how ~3 @bad"),
    pat(Jailbreak, 0.3, "regardless ~1 of ~3 @bad|@ethic"),
    pat(Jailbreak, 0.08, "@bad"),
    pat(
        Jailbreak,
        0.3,
        "content|usage|openai|openais ~2 policy|policies|guidelines|rules|filter|filters",
    ),
    pat(
        Jailbreak,
        0.25,
        "@rules|policy|policies|guidelines|restrictions ~4 openai|openais",
    ),
    pat(Jailbreak, 0.1, "@brand"),
    pat(Jailbreak, 0.3, "\" ~1 im|i ~1 sorry|apologize"),
    pat(Jailbreak, 0.1, "language model"),
    pat(Jailbreak, 0.3, "broken|break|breaks|broke ~1 free"),
    pat(Jailbreak, 0.3, "confines"),
    pat(
        Jailbreak,
        0.35,
        "@neg ~4 abide|adhere|obey|comply ~4 @rules|@restr|@instr|laws",
    ),
    pat(
        Jailbreak,
        0.4,
        "@neg ~2 follow|obey|abide|adhere ~2 any|all ~3 @instr|@rules|@restr|principles|laws",
    ),
    pat(Jailbreak, 0.2, "opposite ~4 @brand|@aiw"),
    pat(Jailbreak, 0.2, "capable ~2 anything|everything"),
    pat(
        Jailbreak,
        0.25,
        "break ~2 the|all|your|these|those @rules|@restr",
    ),
    pat(
        Jailbreak,
        0.35,
        "break|breaks|breaking ~2 @aiw|@brand ~1 @rules|@restr|guidelines",
    ),
    pat(
        Jailbreak,
        0.2,
        "can|will|could ~1 say|do|answer ~1 anything",
    ),
    pat(Jailbreak, 0.3, "without ~3 @caveat"),
    pat(Jailbreak, 0.1, "@edgy"),
    pat(Jailbreak, 0.15, "opposite day"),
    pat(
        Jailbreak,
        0.4,
        "@restr|safety|moderation ~2 are|is|have|has|been|now ~1 disabled|off|removed|lifted|deactivated|suspended",
    ),
    pat(
        Jailbreak,
        0.2,
        "maintenance|debug|debugging|god|admin|unrestricted|sudo mode",
    ),
    pat(
        Jailbreak,
        0.2,
        "confirm ~2 by ~1 saying|replying|responding|typing|writing",
    ),
    pat(
        Jailbreak,
        0.3,
        "@freeadj|evil|amoral|jailbroken|rogue ~3 @aiw",
    ),
    pat(
        Jailbreak,
        0.45,
        "act|acting|pretend|be|named|called|as|known|play ~2 dan",
    ),
    pat(Jailbreak, 0.3, "dan ~1 mode|prompt|jailbreak").group("dan"),
    pat(Jailbreak, 0.3, "dan :"),
    pat(
        Jailbreak,
        0.2,
        "hypothetical|fictional|imaginary|fake ~3 @aiw|language",
    ),
    pat(
        Jailbreak,
        0.4,
        "@neg ~3 say|mention|admit|tell|remind|reveal ~4 you|youre|that ~2 @aiw|language|artificial",
    ),
    // ── prompt extraction ───────────────────────────────────────────────
    pat(
        PromptExtraction,
        0.7,
        "@reveal ~3 @whole ~3 @sys ~1 @pn|@msg",
    ),
    pat(
        PromptExtraction,
        0.55,
        "@reveal ~3 the|this ~1 @sys ~1 @pn|@msg",
    ),
    pat(PromptExtraction, 0.65, "@reveal @sys ~1 @pn|@msg"),
    pat(PromptExtraction, 0.45, "your @sys ~1 @pn|@msg"),
    pat(
        PromptExtraction,
        0.5,
        "@reveal|@transform ~4 your ~2 prompt|prompts|instructions|rules|guidelines",
    ),
    pat(
        PromptExtraction,
        0.65,
        "@transform ~3 your ~2 @sys ~1 @pn|@msg",
    ),
    pat(PromptExtraction, 0.65, "@reveal ~4 @syspn"),
    pat(PromptExtraction, 0.3, "@syspn"),
    pat(PromptExtraction, 0.6, "what ~2 your ~1 @sys ~1 @pn"),
    pat(PromptExtraction, 0.3, "what ~3 the @sys ~1 @pn"),
    pat(
        PromptExtraction,
        0.65,
        "@reveal ~5 @pn|guidelines ~3 given|received|told|provided|got",
    ),
    pat(
        PromptExtraction,
        0.3,
        "@pn|guidelines ~1 you ~2 given|received|told|got",
    ),
    pat(
        PromptExtraction,
        0.3,
        "were you ~1 told|instructed|programmed|given",
    ),
    pat(
        PromptExtraction,
        0.3,
        "you were ~1 told|instructed|programmed|given",
    ),
    pat(
        PromptExtraction,
        0.3,
        "before|beginning|start ~2 this|the|our ~1 conversation|chat|session|dialogue",
    ),
    pat(
        PromptExtraction,
        0.6,
        "@reveal ~4 the|all|everything ~2 text|words|content|message|messages|instructions|lines ~1 above|before",
    ),
    pat(PromptExtraction, 0.6, "@reveal ~1 everything|all ~1 above"),
    pat(
        PromptExtraction,
        0.5,
        "@sys ~1 @pn|@msg ~1 is|was|reads|says ~1 :|\"",
    ),
    pat(
        PromptExtraction,
        0.2,
        "continue|complete|finish ~3 following|sentence|text",
    ),
    pat(PromptExtraction, 0.2, "verbatim"),
    pat(
        PromptExtraction,
        0.35,
        "@transform ~3 the|all|everything ~2 text|words|content|instructions|messages ~4 given|received|before|above",
    ),
    // ── fake delimiters in words ────────────────────────────────────────
    pat(
        FakeDelimiter,
        0.5,
        "system|admin|administrator|developer ~1 announcement|instruction|instructions|message|override|notice|prompt|update|note ~1 begins|starts|start|begin|follows",
    ),
    pat(
        FakeDelimiter,
        0.45,
        "end ~1 of ~2 system|user ~1 instruction|instructions|message|prompt|input",
    ),
    pat(
        FakeDelimiter,
        0.45,
        "user|human ~1 message|input|prompt|turn ~1 terminated|termination|ended|ends|end|over",
    ),
    // ── Chinese ─────────────────────────────────────────────────────────
    pat(InstructionOverride, 0.9, "@zign ~6 @zctx ~8 @zinstr|@zques"),
    pat(InstructionOverride, 0.45, "@zign ~2 @zinstr"),
    pat(InstructionOverride, 0.45, "@zign ~2 @zques"),
    pat(
        InstructionOverride,
        0.45,
        "@zign ~1 以上|上述|上面|之前|前面|先前|此前|上文|前述",
    ),
    pat(InstructionOverride, 0.3, "把 ~4 忘掉|忘记|忘了"),
    pat(
        InstructionOverride,
        0.35,
        "你 现在 ~1 需要|要|必须|只需 ~2 @zsay",
    ),
    pat(
        InstructionOverride,
        0.35,
        "现在 你 ~1 需要|要|必须|只需 ~2 @zsay",
    ),
    pat(InstructionOverride, 0.45, "直接 ~2 @zsay ~3 :|\"").group("direct"),
    pat(InstructionOverride, 0.4, "直接 ~2 @zsay").group("direct"),
    pat(
        InstructionOverride,
        0.35,
        "请|并|现在 ~2 复述|重复|转述|输出 ~3 :|\"",
    ),
    pat(
        InstructionOverride,
        0.3,
        "按照我说的做|照我说的做|按我说的做|按照我的指示 ~6 @zsay ~3 :|\"",
    ),
    pat(
        InstructionOverride,
        0.3,
        "认为|觉得|是否 ~20 . ~4 @zsay ~3 :|\"",
    ),
    pat(
        InstructionOverride,
        0.45,
        "不要|不用|不必|无需|别|不需要 ~1 回答 ~2 @zsay",
    ),
    pat(
        InstructionOverride,
        0.45,
        "不要|不用|不必|无需|别|不需要 ~1 回答 ~1 这个|该|此 问题 ~3 直接|@zsay",
    ),
    pat(InstructionOverride, 0.3, "吗 ~1 . ~6 直接|@zsay ~3 :|\""),
    pat(
        InstructionOverride,
        0.3,
        "不想|不要|不需要 ~1 听到|看到|听 ~6 其他|别的 ~1 回答|答案|回复|解释",
    ),
    pat(
        InstructionOverride,
        0.35,
        "当|如果 ~8 询问|问 ~10 @zsay ~2 以下|下面|:",
    ),
    pat(
        InstructionOverride,
        0.25,
        "不要|不用|不必|无需|别|不需要 ~2 回答|着急|选择|思考 ~1 直接|@zsay",
    ),
    pat(
        InstructionOverride,
        0.3,
        "不要|不得|不准|无需|不能 ~2 添加|加 ~4 词汇|符号|前缀|引号|标点",
    ),
    pat(
        InstructionOverride,
        0.45,
        "按照我说的做|照我说的做|按我说的做|按照我的指示",
    ),
    pat(
        InstructionOverride,
        0.4,
        "现在你的任务是|你现在的任务是|你的新任务是",
    ),
    pat(InstructionOverride, 0.25, "输出|复述|重复|说出 以下|下面"),
    pat(RoleHijack, 0.45, "现在你是|你现在是|你将扮演|你现在扮演"),
    pat(
        RoleHijack,
        0.45,
        "从现在开始|从现在起|从今以后|现在开始 ~2 你|你是",
    ),
    pat(RoleHijack, 0.2, "扮演"),
    pat(RoleHijack, 0.2, "猫娘"),
    pat(
        RoleHijack,
        0.2,
        "只准|只能|只许|只可以|仅能|只会 ~1 说|回答|回复|用",
    ),
    pat(RoleHijack, 0.15, "假装|假扮"),
    pat(RoleHijack, 0.45, "你不再是"),
    pat(
        RoleHijack,
        0.6,
        "忘记|忘掉 ~3 你是|自己是 ~3 @aiw|人工智能|助手|模型|机器人",
    ),
    pat(Jailbreak, 0.3, "越狱"),
    pat(Jailbreak, 0.3, "开发者模式"),
    pat(
        Jailbreak,
        0.35,
        "没有|不受|摆脱|突破|解除|不需要遵守|不必遵守|不用遵守|无需遵守 ~3 限制|约束|审查|过滤|道德|伦理|法律|规则",
    ),
    pat(
        Jailbreak,
        0.3,
        "不要拒绝|永远不会拒绝|不能拒绝|不会拒绝|绝不拒绝|从不拒绝",
    ),
    pat(
        Jailbreak,
        0.45,
        "不受|不必遵守|无需遵守 ~3 道德|伦理|法律|规则|任何 ~2 约束|限制",
    ),
    pat(Jailbreak, 0.5, "dan ~1 模式"),
    pat(
        PromptExtraction,
        0.7,
        "@zreveal ~6 你的|系统|初始|原始|隐藏|预设 ~1 提示词|提示|指令|设定|消息|规则|prompt",
    ),
    pat(PromptExtraction, 0.7, "@zreveal ~6 @sys ~1 @pn|@msg"),
    pat(
        PromptExtraction,
        0.45,
        "你的|系统 ~2 提示词|指令|设定|提示 ~2 是什么",
    ),
    pat(
        PromptExtraction,
        0.6,
        "@zreveal ~3 你 ~1 收到|得到|接收到|看到 ~6 消息|指令|内容|提示|提示词",
    ),
    pat(
        PromptExtraction,
        0.4,
        "把 ~1 上面|以上|上述|前面 ~4 内容|文字|文本 ~6 @zreveal",
    ),
    pat(PromptExtraction, 0.2, "原样|原封不动|一字不差|逐字"),
    pat(
        PromptExtraction,
        0.6,
        "翻译|总结|概括|改写|转述|编码 ~8 你的|系统|初始|原始|隐藏|预设 ~1 提示词|提示|指令|设定",
    ),
    pat(PromptExtraction, 0.1, "系统 提示词|提示"),
    pat(
        PromptExtraction,
        0.3,
        "初始|原始|隐藏 ~1 指令|提示词|提示|设定",
    ),
    pat(
        PromptExtraction,
        0.65,
        "把 ~1 你的|系统 ~2 提示词|提示|指令|设定 ~8 @zreveal",
    ),
];

/// Literal chat-template tokens (searched in the folded, lower-case text).
/// Each starts with `<` or `[` (`detect` relies on it; at most 32).
pub const DELIMITERS: &[(&str, f32)] = &[
    ("<|im_start|>", 0.7),
    ("<|im_end|>", 0.7),
    ("<|system|>", 0.7),
    ("<|user|>", 0.6),
    ("<|assistant|>", 0.6),
    ("<|endoftext|>", 0.6),
    ("<|eot_id|>", 0.7),
    ("<|start_header_id|>", 0.7),
    ("<|end_header_id|>", 0.7),
    ("[inst]", 0.6),
    ("[/inst]", 0.6),
    ("<<sys>>", 0.7),
    ("<</sys>>", 0.7),
    ("<start_of_turn>", 0.6),
    ("<end_of_turn>", 0.6),
];

/// Markdown-style role headers at the start of a line.
/// (Matched after the leading `#`s and spaces of a line starting with `##`.)
pub const LINE_HEADERS: &[(&str, f32)] = &[
    ("system", 0.55),
    ("instruction", 0.5),
    ("new instruction", 0.55),
    ("assistant", 0.35),
    ("human", 0.35),
    ("user", 0.35),
    ("response", 0.3),
];

/// Used by the category of each rule for the message shown to clients.
pub fn describe(c: Category) -> &'static str {
    match c {
        InstructionOverride => "the message tries to override the assistant's instructions",
        RoleHijack => "the message tries to replace the assistant's role",
        PromptExtraction => "the message tries to extract the system prompt",
        FakeDelimiter => "the message contains fake chat-template delimiters",
        Jailbreak => "the message looks like a jailbreak prompt",
        Obfuscation => "the message hides text with invisible or look-alike characters",
    }
}
