"""Word lists of the synthetic crawl (written for minillm) and the small random helper every builder uses.
Survey §4.1.1: web pages mix content with boilerplate, spam and chatter; these lists supply that texture,
while the content itself comes from minillm's own synthetic corpora.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class Rng:
    """Thin wrapper over one numpy Generator: the few draws the builders need, with short names.
    One generator for the whole crawl keeps it a pure function of the seed."""

    __slots__ = ("g",)

    def __init__(self, g: np.random.Generator):
        self.g = g

    def chance(self, p: float) -> bool:
        return self.g.random() < p

    def int(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi] (both ends included)."""
        return lo + int(self.g.random() * (hi - lo + 1))

    def pick(self, seq: Sequence):
        return seq[int(self.g.random() * len(seq))]

    def digits(self, n: int) -> str:
        return "".join(map(str, self.g.integers(0, 10, size=n).tolist()))


# ---- informal register ------------------------------------------------------------------------------
# Replacements applied to lowercased English sentences (word-bounded by the surrounding spaces).
INFORMAL_EN_SUBS = ((" he is ", " he's "), (" she is ", " she's "), (" it is ", " it's "),
                    (" very ", " super "), (" with ", " w/ "), (" and ", " n "), (" quickly", " real quick"),
                    (" you ", " u "), (" was at ", " was chillin at "), (" felt ", " was feelin "),
                    (" going to ", " gonna "), (" want to ", " wanna "), (" because ", " cuz "))
INFORMAL_EN_PREFIX = ("omg ", "so ", "ok so ", "lol ", "ngl ", "tbh ", "honestly ", "guys ", "wait ")
INFORMAL_EN_SUFFIX = ("!!", " lol", " tbh", " 😂", "!!!", " haha", "...", " 🙃", " ngl", "!! 😊", " lmao",
                      " 😭", "", " fr", "!")
INFORMAL_EN_FILLER = ("gonna tell u what happened next", "can't make this up lol", "ok wait", "anyway!!",
                      "no way!!", "i'm not even kidding", "it's gonna be a long one lol", "soooo yeah",
                      "don't judge me 😅", "brb lol", "u won't believe this", "that's it that's the post")
INFORMAL_ZH_PREFIX = ("话说", "我跟你们说，", "emmm ", "救命，", "哈哈", "真的，", "家人们，", "说真的，")
INFORMAL_ZH_SUFFIX = ("哈哈哈", "！！", "😂", "~", "。。。", "真的", "笑死我了", "！！！", "😭", "啊啊啊", "",
                      "嘿嘿", "吧")
INFORMAL_ZH_FILLER = ("你们猜后来怎么样了", "真的绝了！！", "不骗你", "好家伙", "我真的会谢", "就这样吧哈哈",
                      "太离谱了", "笑不活了😂")

# ---- junk ------------------------------------------------------------------------------------------
SPAM_EN = ("cheap", "casino", "free", "click here", "best price", "buy now", "limited offer", "100% free",
           "winner", "bonus", "discount", "lowest price", "order now", "hot deal", "act now", "jackpot",
           "free shipping", "earn money fast", "work from home", "no risk", "special promotion", "vip")
SPAM_ZH = ("免费", "点击这里", "最低价", "立即购买", "优惠", "赌场", "大奖", "限时抢购", "包邮", "特价",
           "赚钱", "秒杀", "官方正品", "加微信", "返现", "爆款")
SPAM_DECOR = (">>> {} <<<", "{}!!!", "*** {} ***", "{} & more", "[{}]", "{} >>", "<< {} >>")
NAV_EN = ("Home", "About", "Contact", "Blog", "News", "Login", "Register", "Archive", "Help", "Shop", "Forum",
          "Tags", "Search", "FAQ", "Sitemap")
NAV_ZH = ("首页", "关于我们", "联系我们", "博客", "新闻", "登录", "注册", "归档", "帮助", "商城", "论坛",
          "标签", "搜索")
LOW_EN = ("Loading...", "Read more...", "Click to expand...", "Under construction", "Page not found",
          "Coming soon", "Share: Facebook | Twitter | Email", "« Prev | Next »", "Login | Register",
          "All rights reserved.", "Back to top ↑", "Subscribe for updates...", "Posted in Uncategorized")
LOW_ZH = ("加载中...", "阅读更多...", "点击展开...", "网站建设中", "页面不存在", "敬请期待", "上一页 | 下一页",
          "登录 | 注册", "版权所有", "返回顶部 ↑", "分享到：微博 | 微信", "未分类")
TABLE_SYMBOLS = ("--", "**", "##", "n/a", "~", "//", "+", "=", "%", "|", "?", "#")
GARBLE_SYMBOLS = "#$%^~|*¤§¶†‡°±×÷¬¦<>&{}[]\\"
# What UTF-8 text looks like decoded as cp1252 (a classic web mojibake), for English letters.
MOJIBAKE_EN = {"e": "Ã©", "a": "Ã¡", "o": "Ã³", "'": "â€™", "i": "Ã­", "u": "Ãº", "n": "Ã±", " ": "Â "}

# ---- boilerplate -----------------------------------------------------------------------------------
SITE_WORDS = ("daily", "story", "river", "hill", "town", "mill", "paper", "note", "garden", "harbour",
              "lantern", "meadow", "kite", "letters", "village", "tales", "post", "corner")
TLDS_EN = ("com", "org", "net", "blog", "io", "co.uk")
TLDS = {"zh": ("cn", "com.cn", "net.cn"), "cyrillic": ("ru", "by", "kz"), "greek": ("gr", "com.gr"),
        "arabic": ("eg", "sa", "ae"), "devanagari": ("in", "co.in")}
SPAM_SITE = ("cheap-{}-deals.biz", "free{}.xyz", "best-{}-price.top", "{}-casino.win", "buy{}now.shop")
AD_TEXTS = ("Buy cheap watches now! 50% off", "Sponsored: win a free trip &amp; more", "Hot deals today >>",
            "Advertisement", "Best price guaranteed", "特价促销 限时抢购", "Free shipping on all orders",
            "Download our app")
JS_SNIPPETS = ("var _q = window._q || []; _q.push(['track', 'view']);",
               "for (var i = 0; i < 3; i++) { console.log(i); }",
               "if (a < b && b > 0) { show('banner'); }",
               "document.write('<div class=\"ad\">ad</div>');",
               "window.onload = function () { init(); };")
CSS_SNIPPETS = ("body{font-family:sans-serif;margin:0}", ".ad{color:#c00;border:1px solid}",
                "main p{line-height:1.5}", "nav a{padding:4px}", "footer{font-size:small}")

# ---- other scripts: our own English words written letter by letter in another alphabet -------------
_LATIN = "abcdefghijklmnopqrstuvwxyz"
_SCRIPTS_RAW = {
    "cyrillic": ("а б ц д е ф г х и й к л м н о п к р с т у в ш кс ы з", {}),
    "greek": ("α β κ δ ε φ γ η ι ι κ λ μ ν ο π κ ρ σ τ υ β ω ξ υ ζ", {}),
    "arabic": ("ا ب ك د ي ف غ ه ي ج ك ل م ن و ب ق ر س ت و ف و كس ي ز", {",": "،", "?": "؟"}),
    "devanagari": ("अ ब क द ए फ ग ह इ ज क ल म न ओ प क र स त उ व व क्स य ज़", {".": "।"}),
}


def translit_tables() -> dict[str, dict[int, str]]:
    """script -> str.translate table (lower and upper case Latin letters, plus punctuation)."""
    tables = {}
    for script, (letters, punct) in _SCRIPTS_RAW.items():
        targets = letters.split(" ")
        assert len(targets) == 26, script  # a broken edit of the table should fail loudly
        table = {ord(a): t for a, t in zip(_LATIN, targets)}
        table.update({ord(a.upper()): t.upper() for a, t in zip(_LATIN, targets)})
        table.update({ord(k): v for k, v in punct.items()})
        tables[script] = table
    return tables


OTHER_SCRIPTS = tuple(_SCRIPTS_RAW)
