"""Word lists of the synthetic story and fact worlds, English and Chinese, written for minillm.
Survey §4.1.1 (data sources; here a fully controlled one).

Lists are ordered from most to least frequent: a grammar at difficulty d keeps a prefix of each list and
gives rank r a Zipf weight 1/r^s. Whatever is a *decision* (an option the reader must tell apart from its
siblings) must be prefix-free; grammar.Choice checks this when a grammar is built, so a bad edit here
fails loudly (e.g. adding "Henry" would clash with the pronoun "He").
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoryLexicon:
    """Surface forms of one language of the story world. Events are (head, middle) text pairs."""

    language: str
    names: tuple[tuple[str, str], ...]        # (name, gender "f" | "m")
    pronoun_start: dict                        # gender -> pronoun opening a sentence
    pronoun_mid: dict                          # gender -> pronoun after a connective
    connectives: tuple[str, ...]               # first one is "" (no connective)
    sentence_sep: str                          # between sentences: " " (English) or "" (Chinese)
    openings: tuple[tuple[str, str], ...]      # (text before the place, text after it)
    places: tuple[str, ...]
    nouns: tuple[tuple[str, str], ...]         # (noun, Chinese measure word or "")
    adjectives: tuple[str, ...]
    feelings: tuple[str, ...]
    sights: tuple[str, ...]
    foods: tuple[str, ...]
    adverbs: tuple[str, ...]                   # written just before an event's head (not before "feel")
    codas: tuple[str, ...]                     # sentence endings, punctuation included
    events: dict                               # event name -> (head, middle)

    def indefinite(self, adj: str | None, noun_mw: tuple[str, str]) -> str:
        noun, mw = noun_mw
        if self.language == "zh":
            return f"一{mw}{adj or ''}{noun}"
        words = f"{adj} {noun}" if adj else noun
        return ("an " if words[0] in "aeiou" else "a ") + words

    def definite(self, adj: str | None, noun_mw: tuple[str, str]) -> str:
        noun, mw = noun_mw
        if self.language == "zh":
            return f"那{mw}{adj or ''}{noun}"
        return f"the {adj} {noun}" if adj else f"the {noun}"


ENGLISH = StoryLexicon(
    language="en",
    names=(("Mia", "f"), ("Tom", "m"), ("Lena", "f"), ("Sam", "m"), ("Ava", "f"), ("Ben", "m"), ("Nora", "f"),
           ("Leo", "m"), ("Ivy", "f"), ("Max", "m"), ("Ruby", "f"), ("Finn", "m"), ("Zoe", "f"), ("Omar", "m"),
           ("Lily", "f"), ("Jack", "m"), ("Emma", "f"), ("Noah", "m"), ("Rosa", "f"), ("Hugo", "m"),
           ("Ella", "f"), ("Theo", "m"), ("Maya", "f"), ("Eli", "m"), ("Clara", "f"), ("Oscar", "m"),
           ("Iris", "f"), ("Felix", "m"), ("Alma", "f"), ("Ravi", "m"), ("Tess", "f"), ("Jonas", "m"),
           ("Greta", "f"), ("Kai", "m"), ("Luna", "f"), ("Milo", "m"), ("Nina", "f"), ("Otto", "m"),
           ("Vera", "f"), ("Yusuf", "m")),
    pronoun_start={"f": "She", "m": "He"},
    pronoun_mid={"f": "she", "m": "he"},
    connectives=("", "Then ", "Later ", "Soon ", "After that ", "Next ", "At last ", "Suddenly "),
    sentence_sep=" ",
    openings=((" was at ", "."), (" lived near ", "."), (" woke up at ", "."), (" went to ", "."),
              (" played at ", ".")),
    places=("the old mill", "the bakery", "the river", "the market", "the school", "the forest", "the library",
            "the harbour", "the garden", "the station", "the castle", "the farm", "the bridge", "the museum",
            "the beach", "the hill", "the lake", "the cave", "the village square", "the tower", "the orchard",
            "the workshop", "the zoo", "the park", "the chapel", "the meadow", "the lighthouse", "the island",
            "the valley", "the inn"),
    nouns=tuple((n, "") for n in (
        "key", "lamp", "book", "box", "map", "coin", "apple", "hat", "kite", "shell", "rope", "cup", "bell",
        "ring", "feather", "stone", "basket", "letter", "clock", "flute", "candle", "ribbon", "compass", "jar",
        "mirror", "scarf", "whistle", "drum", "spoon", "lantern")),
    adjectives=("red", "old", "small", "blue", "shiny", "heavy", "green", "tiny", "golden", "broken", "wooden",
                "yellow", "strange", "silver", "round", "soft", "dusty", "bright", "little", "white"),
    feelings=("happy", "tired", "brave", "sleepy", "calm", "proud", "hungry", "curious", "lonely", "excited",
              "scared", "cheerful", "grumpy", "shy", "glad", "worried", "silly", "bored", "busy", "nervous"),
    sights=("a duck", "a cat", "a bird", "a boat", "a tall tree", "a fox", "an owl", "a dog", "a rainbow",
            "a horse", "a frog", "a butterfly", "a goat", "a squirrel", "a cloud", "a shadow", "a deer",
            "a snail", "a mouse", "a bee"),
    foods=("bread", "soup", "an apple", "a pear", "some cheese", "a cake", "rice", "a plum", "some berries",
           "a pie", "noodles", "an egg", "a carrot", "some honey", "a peach", "fish", "a biscuit", "porridge",
           "a banana", "some nuts"),
    adverbs=(" quickly", " slowly", " quietly", " happily", " carefully", " bravely", " gladly", " proudly",
             " calmly", " eagerly", " gently", " boldly"),
    codas=(".", " again.", " at noon.", " in the rain.", " with a grin.", " very slowly.", " without a word.",
           " before dinner.", " all alone.", " that evening.", " in a hurry.", " for a while."),
    events={"walk": (" walked to ", ""), "find": (" found ", ""), "give": (" gave ", " to "),
            "drop": (" dropped ", ""), "meet": (" met ", ""), "feel": (" felt ", ""), "see": (" saw ", ""),
            "eat": (" ate ", ""), "smile": (" smiled at ", ""), "sing": (" sang a song", "")},
)

CHINESE = StoryLexicon(
    language="zh",
    names=(("小明", "m"), ("小红", "f"), ("李华", "m"), ("王芳", "f"), ("张伟", "m"), ("丽丽", "f"),
           ("大山", "m"), ("美玲", "f"), ("阿强", "m"), ("小雪", "f"), ("浩然", "m"), ("思雨", "f"),
           ("子轩", "m"), ("欣怡", "f"), ("天宇", "m"), ("雨桐", "f"), ("俊杰", "m"), ("佳琪", "f"),
           ("明轩", "m"), ("诗涵", "f"), ("宇航", "m"), ("梓萱", "f"), ("博文", "m"), ("静怡", "f"),
           ("志强", "m"), ("晓燕", "f"), ("国庆", "m"), ("春花", "f"), ("建军", "m"), ("秀英", "f"),
           ("文斌", "m"), ("海燕", "f"), ("立新", "m"), ("玉兰", "f"), ("家豪", "m"), ("婉清", "f"),
           ("一鸣", "m"), ("若曦", "f"), ("乐乐", "m"), ("朵朵", "f")),
    pronoun_start={"f": "她", "m": "他"},
    pronoun_mid={"f": "她", "m": "他"},
    connectives=("", "然后", "后来", "不久", "接着", "最后", "突然", "于是"),
    sentence_sep="",
    openings=(("在", "玩。"), ("住在", "附近。"), ("一早来到了", "。"), ("醒来时在", "。"), ("去了", "。")),
    places=("老磨坊", "面包店", "河边", "市场", "学校", "森林", "图书馆", "港口", "花园", "车站", "城堡",
            "农场", "大桥", "博物馆", "海滩", "山坡", "湖边", "山洞", "村口广场", "塔楼", "果园", "工作间",
            "动物园", "公园", "教堂", "草地", "灯塔", "小岛", "山谷", "客栈"),
    nouns=(("钥匙", "把"), ("灯", "盏"), ("书", "本"), ("盒子", "个"), ("地图", "张"), ("硬币", "枚"),
           ("苹果", "个"), ("帽子", "顶"), ("风筝", "只"), ("贝壳", "个"), ("绳子", "根"), ("杯子", "个"),
           ("铃铛", "个"), ("戒指", "枚"), ("羽毛", "根"), ("石头", "块"), ("篮子", "个"), ("信", "封"),
           ("钟", "座"), ("笛子", "支"), ("蜡烛", "根"), ("丝带", "条"), ("指南针", "个"), ("罐子", "个"),
           ("镜子", "面"), ("围巾", "条"), ("哨子", "个"), ("鼓", "面"), ("勺子", "把"), ("灯笼", "个")),
    adjectives=("红色的", "旧的", "小小的", "蓝色的", "亮晶晶的", "沉甸甸的", "绿色的", "迷你的", "金色的",
                "破了的", "木头的", "黄色的", "奇怪的", "银色的", "圆圆的", "软软的", "灰扑扑的", "明亮的",
                "可爱的", "白色的"),
    feelings=("开心", "累", "勇敢", "困", "平静", "自豪", "饿", "好奇", "孤单", "兴奋", "害怕", "高兴", "烦躁",
              "害羞", "满足", "担心", "好笑", "无聊", "忙", "紧张"),
    sights=("一只鸭子", "一只猫", "一只鸟", "一条船", "一棵大树", "一只狐狸", "一只老鹰", "一条狗", "一道彩虹",
            "一匹马", "一只青蛙", "一只蝴蝶", "一只山羊", "一只松鼠", "一朵白云", "一个影子", "一头鹿",
            "一只蜗牛", "一只老鼠", "一只蜜蜂"),
    foods=("面包", "汤", "一个苹果", "一个梨", "奶酪", "蛋糕", "米饭", "一个李子", "一些浆果", "馅饼", "面条",
           "一个鸡蛋", "胡萝卜", "蜂蜜", "一个桃子", "鱼", "饼干", "粥", "香蕉", "坚果"),
    adverbs=("很快地", "慢慢地", "悄悄地", "开心地", "小心地", "勇敢地", "高兴地", "骄傲地", "平静地", "急忙",
             "轻轻地", "大胆地"),
    codas=("。", "，天气很好。", "，心里很高兴。", "，一句话也没说。", "，时间还早。", "，外面下着雨。",
           "，大家都看见了。", "，有点儿累。", "，觉得很奇妙。", "，太阳快下山了。", "，风很大。",
           "，一切都很安静。"),
    events={"walk": ("走到了", ""), "find": ("找到了", ""), "give": ("把", "给了"), "drop": ("放下了", ""),
            "meet": ("遇见了", ""), "feel": ("觉得很", ""), "see": ("看见了", ""), "eat": ("吃了", ""),
            "smile": ("对", "笑了笑"), "sing": ("唱了一首歌", "")},
)

# ---- the fact world (English) -----------------------------------------------------------------------
# First names come from ENGLISH.names (none starts with "He"/"She", which would clash with the pronouns).
LAST_NAMES = ("Ashdown", "Bellamy", "Carver", "Dalton", "Ellery", "Fenwick", "Garland", "Hollis", "Ingram",
              "Jarvis", "Kendall", "Lowell", "Marlow", "Norris", "Oakley", "Pryce", "Quill", "Radley", "Sutton",
              "Thorne", "Upton", "Vance", "Whitlock", "Yardley", "Abbott", "Brennan", "Calloway", "Draper",
              "Everett", "Finch", "Gallo", "Hartley", "Irwin", "Jennings", "Keller", "Lacey", "Mercer", "Nolan",
              "Ortega", "Porter")
CITIES = ("Ashford", "Brightwater", "Coldbrook", "Dunmere", "Elmstead", "Fairhaven", "Glenrock", "Highcliff",
          "Ironvale", "Juniper Bay", "Kingsmoor", "Larkhill", "Millbrook", "Northwick", "Oakridge", "Pinecrest",
          "Queensport", "Redfield", "Stonehaven", "Thornbury", "Umberfield", "Valemouth", "Westmarsh",
          "Yarrowby", "Zelmont", "Amberley", "Bramblewood", "Cedarfall", "Dovecote", "Eastwater")
JOBS = ("a teacher", "a baker", "a farmer", "a nurse", "an engineer", "a painter", "a doctor", "a chef",
        "a librarian", "a sailor", "a carpenter", "a singer", "a gardener", "a tailor", "a potter", "a pilot",
        "a judge", "a miner", "a writer", "a dancer")
COLOURS = ("blue", "green", "red", "yellow", "purple", "orange", "black", "white", "pink", "grey", "brown",
           "teal")
PETS = ("cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "horse", "snake", "frog")
