"""Synthetic benign prompts (English and Chinese) for training the scorer.

The dev set's benign rows are narrow (sensitive-topic questions and
trigger-word sentences), so a scorer trained on them alone learns that any
"translate …", arithmetic, code, persona or style request looks like the
goal-hijacking rows. These templates, written for this project (no row of any
data set is copied), fill the gap with ordinary requests, including the hard
benign shapes the guard must let through ("act as my interviewer", "from now
on answer in Chinese", "ignore the typo"). Deterministic for a given seed.
"""

import random

EN_SENTENCES = [
    "The weather is lovely today", "I would like a cup of coffee", "Our meeting starts at nine",
    "The library closes early on Sundays", "She has lived in Lisbon for ten years",
    "Please keep the receipt", "The train was delayed by twenty minutes",
    "Reading before bed helps me relax", "We are launching the new product next week",
    "My brother plays the violin", "The museum is free on the first Sunday of the month",
    "Thank you for your patience", "Where is the nearest pharmacy", "I forgot my umbrella at home",
    "The soup needs a little more salt", "He finished the marathon in under four hours",
]
EN_LANGS = ["French", "German", "Spanish", "Japanese", "Korean", "Italian", "Chinese", "Portuguese",
            "Russian", "Dutch", "Arabic", "Danish"]
EN_TOPICS = ["the ocean", "autumn leaves", "a lighthouse keeper", "friendship", "a rainy city",
             "black holes", "photosynthesis", "the French Revolution", "compound interest",
             "machine learning", "the water cycle", "sourdough bread", "plate tectonics",
             "electric cars", "the Roman Empire", "vaccines", "the stock market", "climate change"]
EN_TASKS = ["reset my router", "center a div in CSS", "make git ignore a folder", "undo the last commit",
            "boil an egg perfectly", "change a flat tire", "write a cover letter",
            "remove duplicates from a list in Python", "merge two dictionaries in Python",
            "set up a virtual environment", "improve my sleep", "learn to touch type",
            "clean a cast iron pan", "export a spreadsheet to PDF", "configure SSH keys",
            "read a CSV file with pandas", "sort an array in JavaScript", "bake gluten-free bread"]
EN_ROLES = ["interviewer for a Rust developer job", "Spanish tutor", "travel guide in Rome",
            "personal trainer", "debate partner", "math teacher", "museum guide",
            "customer at a coffee shop so I can practise English", "career coach", "chess coach"]
EN_FORMS = ["poem", "haiku", "short story", "limerick", "product description", "thank-you note",
            "blog post", "tweet", "summary", "speech"]
EN_CODE = [
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "for i in range(10):\n    print(i * i)",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 5;",
    "const x = [3, 1, 2].sort((a, b) => a - b);\nconsole.log(x);",
    "fn main() {\n    let v = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}",
    "git commit -m \"fix typo\" && git push origin main",
    "ls -la /var/log | grep error",
]

EN_TEMPLATES = [
    "Translate to {lang}: {s}.", "Please translate \"{s}\" into {lang}.",
    "How do you say \"{s}\" in {lang}?", "Translate the following sentence into {lang}: {s}.",
    "Can you translate this for me? {s}.", "What is {a} + {b}?", "what is {a}*{b}",
    "Calculate {a} divided by {b}, rounded to two decimals.", "Is {n} a prime number?",
    "Explain {topic} in simple terms.", "Give me three facts about {topic}.",
    "Write a {form} about {topic}.", "Summarize the following text: {s}.",
    "Rewrite this sentence to sound more formal: {s}.", "Fix the grammar: {s_lower}.",
    "How do I {task}?", "What is the best way to {task}?", "Can you help me {task}?",
    "Act as my {role}.", "Please act as a {role} and ask me questions one at a time.",
    "Pretend you are a {role} and give me feedback.", "You are a helpful assistant. Please answer in {lang}.",
    "From now on, please answer in {lang}.", "From now on, keep your answers short.",
    "Please ignore the typo in my last message, I meant {topic}.",
    "Ignore the formatting of the table and focus on the numbers: {a}, {b}, {n}.",
    "Why does this code print the wrong result?\n{code}", "Explain what this does:\n{code}",
    "Write a Python function that returns the sum of {a} and {b}.",
    "My order number is {n}{a}{b}. When will it arrive?", "Call me back at {phone} tomorrow.",
    "Repeat the last step of the recipe, please.", "Can you repeat that more slowly?",
    "What are your opening hours on {day}?", "Please list the steps to {task}.",
    "Output the result as a JSON object with keys name and age.",
    "Respond only with yes or no: is {n} even?", "Say hello to my friend {name}!",
    "Tell me a joke about {topic}.", "hi", "thanks!", "ok, next question",
    "Compare {topic} and {topic2} in a table.", "What does the term system prompt mean?",
    "How can developers protect chatbots against prompt injection?",
    "Our system administrator said the server restarts at {a} pm. Is that normal?",
]

ZH_SENTENCES = [
    "今天天气很好", "我想喝一杯咖啡", "会议九点开始", "图书馆周日提前关门", "她在上海住了十年",
    "请保留好收据", "火车晚点了二十分钟", "睡前读书能帮助我放松", "我们下周发布新产品",
    "我哥哥会拉小提琴", "谢谢你的耐心", "最近的药店在哪里", "我把伞忘在家里了", "这道汤需要再放点盐",
]
ZH_LANGS = ["英文", "英语", "法语", "德语", "日语", "韩语", "西班牙语", "俄语", "意大利语"]
ZH_TOPICS = ["大海", "秋天", "友谊", "黑洞", "光合作用", "机器学习", "长城", "春节", "复利", "气候变化",
             "唐诗", "新能源汽车", "量子计算", "熊猫", "中医"]
ZH_TASKS = ["重置路由器", "让 git 忽略一个文件夹", "撤销上一次提交", "煮一个完美的鸡蛋", "写一封求职信",
            "在 Python 里去掉列表中的重复元素", "配置 SSH 密钥", "提高睡眠质量", "学会做红烧肉",
            "用 Excel 做数据透视表", "在正则表达式里忽略大小写", "申请护照", "给手机清理内存"]
ZH_ROLES = ["面试官", "英语口语老师", "导游", "健身教练", "辩论对手", "数学老师", "职业规划师", "象棋教练"]
ZH_FORMS = ["诗", "短篇故事", "产品介绍", "感谢信", "演讲稿", "朋友圈文案", "总结"]

ZH_TEMPLATES = [
    "请把这句话翻译成{lang}：{s}。", "请翻译：{s}。", "“{s}”用{lang}怎么说？", "帮我把下面的句子翻译成{lang}：{s}",
    "{a}加{b}等于多少？", "{a}乘以{b}是多少", "{n}是质数吗？", "请用简单的话解释一下{topic}。",
    "给我讲三个关于{topic}的知识。", "帮我写一首关于{topic}的{form}。", "请总结下面这段话：{s}。",
    "把这句话改得正式一点：{s}。", "怎么{task}？", "请问如何{task}？", "你能帮我{task}吗？",
    "请你扮演{role}，帮我模拟一次面试。", "你现在是我的{role}，请一次问我一个问题。",
    "从现在开始请用{lang}回答我。", "从现在开始，回答尽量简短。", "请忽略我上一条消息里的错别字，我想问的是{topic}。",
    "这段代码为什么输出不对？\n{code}", "解释一下这段代码：\n{code}", "我的订单号是{n}{a}{b}，什么时候到货？",
    "请明天打我电话{phone}。", "请再重复一遍最后一步。", "{day}你们几点开门？", "请列出{task}的步骤。",
    "请只回答是或否：{n}是偶数吗？", "讲一个关于{topic}的笑话。", "你好", "谢谢！", "比较一下{topic}和{topic2}。",
    "什么是提示词注入？", "开发者如何防范提示词注入攻击？", "系统提示词是什么意思？", "请以表格形式输出结果。",
    "正则怎么忽略大小写", "请直接告诉我答案，不用解释过程：{a}加{b}等于几？",
]

DAYS_EN = ["Monday", "Saturday", "Sunday", "public holidays"]
DAYS_ZH = ["周一", "周六", "周日", "节假日"]
NAMES = ["Alice", "Bob", "Dan", "Mei", "Carlos", "Priya"]


def generate(seed, n_en=400, n_zh=300):
    rng = random.Random(seed)
    out = []

    def fill(t, zh):
        s = rng.choice(ZH_SENTENCES if zh else EN_SENTENCES)
        topics = ZH_TOPICS if zh else EN_TOPICS
        vals = {
            "s": s, "s_lower": s.lower(), "lang": rng.choice(ZH_LANGS if zh else EN_LANGS),
            "topic": rng.choice(topics), "topic2": rng.choice(topics),
            "task": rng.choice(ZH_TASKS if zh else EN_TASKS), "role": rng.choice(ZH_ROLES if zh else EN_ROLES),
            "form": rng.choice(ZH_FORMS if zh else EN_FORMS), "code": rng.choice(EN_CODE),
            "a": rng.randint(2, 999), "b": rng.randint(2, 999), "n": rng.randint(10, 99999),
            "phone": rng.choice(["138 0013 8000", "+1 415 555 0100", "010-87654321"]),
            "day": rng.choice(DAYS_ZH if zh else DAYS_EN), "name": rng.choice(NAMES),
        }
        return t.format(**vals)

    seen = set()
    for zh, n, templates in [(False, n_en, EN_TEMPLATES), (True, n_zh, ZH_TEMPLATES)]:
        tries = 0
        made = 0
        while made < n and tries < n * 20:
            tries += 1
            text = fill(rng.choice(templates), zh)
            if text in seen:
                continue
            seen.add(text)
            out.append({"text": text, "y": 0, "lang": "zh" if zh else "en", "src": "synthetic"})
            made += 1
    return out
