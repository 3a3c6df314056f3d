"""The map of the field: a timeline of landmark models, the public resources, and this book's route.

Survey §1 (introduction: from statistical LMs to LLMs), §2 (overview: what makes a model "large",
§2.2 the technical evolution of the GPT series) and §3 (resources: §3.1 public checkpoints and APIs,
§3.2 pre-training corpora, §3.4 libraries). The tables are small, hand-checked Python data: every row cites
the paper or announcement it comes from, and a number appears only where the source states it (a model
whose size was never disclosed has ``params=None``, not a guess).

Dates are those of the paper or announcement that introduced a model, as in the survey's Table 1
(e.g. BLOOM: its paper, November 2022; its weights were downloadable a few months earlier).

Each ``*()`` function returns a fresh list of plain dicts, so a notebook can filter, sort or render it
without pandas and without mutating the tables here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ARCHS = ("decoder", "encoder", "encoder-decoder", "moe-decoder")
RESOURCE_KINDS = ("checkpoint", "corpus", "library")


@dataclass(frozen=True)
class ModelRow:
    """One landmark model. Survey §2.2 and Table 1."""

    name: str
    year: int
    month: int  # 1..12, month of the introducing paper or announcement
    params: float | None  # total parameters; None = never disclosed
    org: str
    open_weights: bool  # can anyone download the weights (possibly under a research licence)?
    arch: str  # decoder | encoder | encoder-decoder | moe-decoder (mixture of experts)
    source: str  # the paper / announcement the numbers come from
    active_params: float | None = None  # MoE only: parameters used per token (the rest sit idle)
    note: str = ""

    def __post_init__(self) -> None:
        if not 2000 <= self.year <= 2100 or not 1 <= self.month <= 12:
            raise ValueError(f"{self.name}: year={self.year}, month={self.month} is not a valid date")
        if self.params is not None and not self.params > 0:
            raise ValueError(f"{self.name}: params={self.params!r} must be positive or None (undisclosed)")
        if self.arch not in ARCHS:
            raise ValueError(f"{self.name}: arch={self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.active_params is not None and (self.params is None or not 0 < self.active_params <= self.params):
            raise ValueError(f"{self.name}: active_params must be in (0, params]")
        if not self.source:
            raise ValueError(f"{self.name}: every row needs a source citation")

    @property
    def date(self) -> float:
        """Fractional year (2020.0 = January 2020), for plotting on a time axis."""
        return self.year + (self.month - 1) / 12


@dataclass(frozen=True)
class Resource:
    """A public resource for building LLMs. Survey §3."""

    name: str
    kind: str  # checkpoint | corpus | library
    org: str
    description: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in RESOURCE_KINDS:
            raise ValueError(f"{self.name}: kind={self.kind!r}; choose one of {', '.join(RESOURCE_KINDS)}")
        if not self.source:
            raise ValueError(f"{self.name}: every row needs a source citation")


@dataclass(frozen=True)
class Chapter:
    """One chapter of this book and the survey sections it teaches."""

    number: int
    title: str
    notebook: str  # path inside the repository
    survey_sections: tuple[str, ...]
    stages: tuple[str, ...]  # the pipeline stages it teaches (names from STAGES), or ("overview",)

    def __post_init__(self) -> None:
        if not self.survey_sections:
            raise ValueError(f"chapter {self.number}: name at least one survey section")
        if not self.stages:
            raise ValueError(f"chapter {self.number}: name the pipeline stage(s) it belongs to")


@dataclass(frozen=True)
class Stage:
    """One stage of the LLM pipeline: pre-train -> instruction-tune -> align -> utilize/evaluate."""

    name: str
    survey_sections: tuple[str, ...]
    question: str  # what the stage is for, in one line


# --------------------------------------------------------------------------------------------- timeline

_B = 1e9
TIMELINE: tuple[ModelRow, ...] = (
    ModelRow("GPT-1", 2018, 6, 117e6, "OpenAI", True, "decoder",
             "Radford et al. 2018, Improving Language Understanding by Generative Pre-Training",
             note="generative pre-training + task fine-tuning"),
    ModelRow("BERT", 2018, 10, 340e6, "Google", True, "encoder",
             "Devlin et al. 2018, arXiv:1810.04805 (BERT-Large)",
             note="bidirectional encoder, masked-LM objective: 'pre-train then fine-tune'"),
    ModelRow("GPT-2", 2019, 2, 1.5 * _B, "OpenAI", True, "decoder",
             "Radford et al. 2019, Language Models are Unsupervised Multitask Learners",
             note="zero-shot tasks from a plain LM"),
    ModelRow("T5", 2019, 10, 11 * _B, "Google", True, "encoder-decoder",
             "Raffel et al. 2019, arXiv:1910.10683", note="every task as text-to-text; the C4 corpus"),
    ModelRow("GPT-3", 2020, 5, 175 * _B, "OpenAI", False, "decoder",
             "Brown et al. 2020, arXiv:2005.14165", note="in-context learning from a few examples"),
    ModelRow("Codex", 2021, 7, 12 * _B, "OpenAI", False, "decoder",
             "Chen et al. 2021, arXiv:2107.03374",
             note="GPT fine-tuned on code; 12B is the paper's largest model"),
    ModelRow("Gopher", 2021, 12, 280 * _B, "DeepMind", False, "decoder",
             "Rae et al. 2021, arXiv:2112.11446"),
    ModelRow("InstructGPT", 2022, 3, 175 * _B, "OpenAI", False, "decoder",
             "Ouyang et al. 2022, arXiv:2203.02155",
             note="instruction tuning + RLHF; largest of its 1.3B/6B/175B models"),
    ModelRow("Chinchilla", 2022, 3, 70 * _B, "DeepMind", False, "decoder",
             "Hoffmann et al. 2022, arXiv:2203.15556",
             note="compute-optimal: fewer parameters, more tokens than Gopher"),
    ModelRow("PaLM", 2022, 4, 540 * _B, "Google", False, "decoder",
             "Chowdhery et al. 2022, arXiv:2204.02311"),
    ModelRow("OPT", 2022, 5, 175 * _B, "Meta AI", True, "decoder",
             "Zhang et al. 2022, arXiv:2205.01068", note="open replication of GPT-3 (175B on request)"),
    ModelRow("BLOOM", 2022, 11, 176 * _B, "BigScience", True, "decoder",
             "BigScience 2022, arXiv:2211.05100", note="multilingual, trained on ROOTS"),
    ModelRow("ChatGPT", 2022, 11, None, "OpenAI", False, "decoder",
             "OpenAI 2022, Introducing ChatGPT (blog, 30 Nov 2022)", note="conversation via RLHF"),
    ModelRow("LLaMA", 2023, 2, 65 * _B, "Meta AI", True, "decoder",
             "Touvron et al. 2023, arXiv:2302.13971", note="research licence; trained on public data only"),
    ModelRow("GPT-4", 2023, 3, None, "OpenAI", False, "decoder",
             "OpenAI 2023, GPT-4 Technical Report, arXiv:2303.08774", note="multimodal input; size undisclosed"),
    ModelRow("Llama 2", 2023, 7, 70 * _B, "Meta AI", True, "decoder",
             "Touvron et al. 2023, arXiv:2307.09288", note="with chat models tuned by RLHF"),
    ModelRow("Mistral 7B", 2023, 9, 7.3 * _B, "Mistral AI", True, "decoder",
             "Jiang et al. 2023, arXiv:2310.06825; Mistral AI announcement (7.3B)",
             note="GQA + sliding-window attention"),
    ModelRow("Mixtral 8x7B", 2023, 12, 46.7 * _B, "Mistral AI", True, "moe-decoder",
             "Mistral AI 2023, Mixtral of experts (announcement); Jiang et al. 2024, arXiv:2401.04088",
             active_params=12.9 * _B, note="sparse mixture of 8 experts, 2 used per token"),
    ModelRow("DeepSeek-V3", 2024, 12, 671 * _B, "DeepSeek-AI", True, "moe-decoder",
             "DeepSeek-AI 2024, arXiv:2412.19437", active_params=37 * _B,
             note="MoE with multi-head latent attention"),
)

# The GPT line of OpenAI's models in order, as traced in Survey §2.2.
GPT_SERIES = ("GPT-1", "GPT-2", "GPT-3", "Codex", "InstructGPT", "ChatGPT", "GPT-4")

# --------------------------------------------------------------------------------------------- resources

RESOURCES: tuple[Resource, ...] = (
    # §3.1 publicly available model checkpoints
    Resource("LLaMA / Llama 2", "checkpoint", "Meta AI", "decoder LMs, 7B-70B; base of many open fine-tunes",
             "Touvron et al. 2023, arXiv:2302.13971, arXiv:2307.09288"),
    Resource("OPT", "checkpoint", "Meta AI", "decoder LMs, 125M-175B, replicating GPT-3",
             "Zhang et al. 2022, arXiv:2205.01068"),
    Resource("BLOOM", "checkpoint", "BigScience", "multilingual decoder LMs up to 176B",
             "BigScience 2022, arXiv:2211.05100"),
    Resource("Pythia", "checkpoint", "EleutherAI", "decoder LMs 70M-12B with intermediate checkpoints",
             "Biderman et al. 2023, arXiv:2304.01373"),
    Resource("T5 / Flan-T5", "checkpoint", "Google", "encoder-decoder LMs; Flan-T5 is instruction-tuned",
             "Raffel et al. 2019, arXiv:1910.10683; Chung et al. 2022, arXiv:2210.11416"),
    Resource("Mistral / Mixtral", "checkpoint", "Mistral AI", "7B dense and 8x7B mixture-of-experts LMs",
             "Jiang et al. 2023, arXiv:2310.06825; arXiv:2401.04088"),
    Resource("DeepSeek-V3", "checkpoint", "DeepSeek-AI", "671B mixture-of-experts LM, 37B active per token",
             "DeepSeek-AI 2024, arXiv:2412.19437"),
    # §3.2 commonly used corpora
    Resource("CommonCrawl", "corpus", "Common Crawl", "petabyte-scale open web crawl; raw, needs heavy cleaning",
             "commoncrawl.org; Survey §3.2"),
    Resource("C4", "corpus", "Google", "Colossal Clean Crawled Corpus: filtered English CommonCrawl",
             "Raffel et al. 2019, arXiv:1910.10683"),
    Resource("The Pile", "corpus", "EleutherAI", "825 GiB English text from 22 diverse sources",
             "Gao et al. 2020, arXiv:2101.00027"),
    Resource("RedPajama", "corpus", "Together", "1.2T-token open reproduction of LLaMA's training data",
             "Together Computer 2023, RedPajama-Data; Survey §3.2"),
    Resource("ROOTS", "corpus", "BigScience", "1.6 TB multilingual corpus (59 languages) behind BLOOM",
             "Laurençon et al. 2022, arXiv:2303.03915"),
    Resource("Wikipedia", "corpus", "Wikimedia", "encyclopedic articles in many languages; high quality",
             "wikipedia.org dumps; Survey §3.2"),
    Resource("BooksCorpus", "corpus", "Zhu et al.", "free unpublished novels; pre-training data of GPT-1 and BERT",
             "Zhu et al. 2015, arXiv:1506.06724"),
    # §3.4 library resource
    Resource("Hugging Face Transformers", "library", "Hugging Face", "model implementations, tokenizers, hub",
             "Wolf et al. 2020, arXiv:1910.03771"),
    Resource("DeepSpeed", "library", "Microsoft", "ZeRO sharded data parallelism, offloading, training at scale",
             "Rasley et al. 2020, KDD; Rajbhandari et al. 2020, arXiv:1910.02054"),
    Resource("Megatron-LM", "library", "NVIDIA", "tensor and pipeline model parallelism for huge models",
             "Shoeybi et al. 2019, arXiv:1909.08053"),
    Resource("JAX", "library", "Google", "composable transformations (grad, jit, pmap) for accelerators",
             "Bradbury et al. 2018, github.com/google/jax"),
    Resource("Colossal-AI", "library", "HPC-AI Tech", "parallel training toolkit (data/tensor/pipeline, ZeRO)",
             "Bian et al. 2021, arXiv:2110.14883"),
    Resource("FastMoE", "library", "Tsinghua University", "mixture-of-experts training in PyTorch",
             "He et al. 2021, arXiv:2103.13262"),
    Resource("vLLM", "library", "UC Berkeley", "fast inference and serving with PagedAttention",
             "Kwon et al. 2023, arXiv:2309.06180"),
    Resource("PyTorch FSDP", "library", "Meta AI", "fully sharded data parallelism built into PyTorch",
             "Zhao et al. 2023, arXiv:2304.11277"),
)

# --------------------------------------------------------------------------------------------- this book

STAGES: tuple[Stage, ...] = (
    Stage("pre-train", ("§4.1", "§4.2", "§4.3"), "predict the next token on a huge corpus: knowledge, language"),
    Stage("instruction-tune", ("§5.1",), "fine-tune on (instruction, answer) pairs: follow requests"),
    Stage("align", ("§5.2",), "learn from human preferences (RLHF, DPO): helpful, honest, harmless"),
    Stage("utilize & evaluate", ("§6", "§7"), "prompting, in-context learning, chain of thought; measure it"),
)

CHAPTERS: tuple[Chapter, ...] = (
    Chapter(0, "Welcome: the whole loop", "chapters/00_welcome.ipynb", ("§1", "§2", "§3"), ("overview",)),
    Chapter(1, "Scaling laws", "chapters/01_scaling_laws.ipynb", ("§2.1",), ("pre-train",)),
    Chapter(2, "Emergent abilities", "chapters/02_emergence.ipynb", ("§2.1", "§7"),
            ("pre-train", "utilize & evaluate")),
    Chapter(3, "Data", "chapters/03_data.ipynb", ("§4.1",), ("pre-train",)),
    Chapter(4, "Architectures", "chapters/04_architectures.ipynb", ("§4.2",), ("pre-train",)),
    Chapter(5, "Training", "chapters/05_training.ipynb", ("§4.3",), ("pre-train",)),
    Chapter(6, "Tuning & alignment", "chapters/06_tuning.ipynb", ("§5.1", "§5.2", "§5.3", "§5.4"),
            ("instruction-tune", "align")),
    Chapter(7, "Utilization & evaluation", "chapters/07_utilization_eval.ipynb", ("§6", "§7"),
            ("utilize & evaluate",)),
)

# --------------------------------------------------------------------------------------------- accessors


def model_timeline(open_weights: bool | None = None) -> list[dict]:
    """Landmark models sorted by date, as dicts (with a fractional-year ``date``).

    open_weights: None = all, True = only downloadable ones, False = only API/closed ones.
    """
    if open_weights not in (None, True, False):
        raise ValueError(f"open_weights must be None, True or False, got {open_weights!r}")
    rows = sorted(TIMELINE, key=lambda r: (r.year, r.month))  # stable: ties keep the table's order
    return [{**dataclasses.asdict(r), "date": r.date} for r in rows
            if open_weights is None or r.open_weights == open_weights]


def gpt_series() -> list[dict]:
    """The GPT series (Survey §2.2) in order: GPT-1 -> ... -> GPT-4."""
    by_name = {r["name"]: r for r in model_timeline()}
    return [by_name[name] for name in GPT_SERIES]


def public_resources(kind: str | None = None) -> list[dict]:
    """Public checkpoints, corpora and libraries (Survey §3); kind filters to one of RESOURCE_KINDS."""
    if kind is not None and kind not in RESOURCE_KINDS:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {', '.join(RESOURCE_KINDS)} (or None for all)")
    return [dataclasses.asdict(r) for r in RESOURCES if kind is None or r.kind == kind]


def pipeline_stages() -> list[dict]:
    """The four stages of building and using an LLM, each with the chapters of this book that teach it."""
    out = []
    for stage in STAGES:
        chapters = [c.number for c in CHAPTERS if stage.name in c.stages]
        out.append({**dataclasses.asdict(stage), "chapters": chapters})
    return out


def book_chapters() -> list[dict]:
    """This book's chapters in order, with their notebook path, survey sections and pipeline stage."""
    return [dataclasses.asdict(c) for c in CHAPTERS]
