"""End to end: widgets in JupyterLab in a real browser, as a reader moves them.

This is what nbval cannot check: that the widgets render in a real browser and that the kernel answers
them. `test_temperature_slider_changes_sample` takes two notebooks through the same steps:
- `widget_demo`, a tiny notebook built here, proves the browser machinery whenever Chromium is present;
- `chapter00`, chapters/00_welcome.ipynb, the first thing every reader sees, run whole.
`test_every_chapters_main_widget_answers` builds one notebook holding the main widget of each of chapters 01-09
(from the shipped records, or a tiny untrained model where the widget needs one: running every chapter whole is
nbval's job) and, cell by cell, moves the widget's first slider (or picks another option of its first dropdown)
and waits for that cell's output to change.
Notebooks are written into the server's temporary root, so a run (or an autosave) never touches the repo.
On failure a screenshot and the page's errors land in the test's tmp_path."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAPTER00 = REPO_ROOT / "chapters" / "00_welcome.ipynb"
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOAD_TIMEOUT_MS = 120_000  # page, kernel start
START_TIMEOUT_MS = 60_000  # from the Run All click to the first cell running
# Run All Cells: the demo takes seconds; the chapter at the ci size gets nbval's per-cell bound.
RUN_TIMEOUT_MS = {"widget_demo": 120_000, "chapter00": 600_000, "chapter_widgets": 300_000}
SAMPLE_TIMEOUT_MS = 60_000  # new sample text after the slider moved
# Selectors look only inside the notebook tab on screen: hidden tabs stay in the DOM.
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (CI: .ci/run installs it with apt-get)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)")

# Text of every output in the notebook, minus the sliders' own labels and readouts: what the reader
# reads as "the sample". Text areas keep their text in .value, not in the DOM, so add it.
SAMPLE_TEXT_JS = """() => {
  const parts = [];
  for (const out of document.querySelectorAll('PANEL .jp-Notebook .jp-OutputArea-output')) {
    const clone = out.cloneNode(true);
    clone.querySelectorAll('.widget-slider').forEach(e => e.remove());
    parts.push(clone.textContent);
    out.querySelectorAll('textarea').forEach(t => parts.push(t.value));
  }
  return parts.join('\\n');
}""".replace("PANEL", PANEL)
# Run All finished: every code cell has a number in its prompt ("[7]:"; "[*]:" is still running).
ALL_CELLS_RAN_JS = """() => {
  const prompts = [...document.querySelectorAll('PANEL .jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}""".replace("PANEL", PANEL)
# Run All started: some code cell is running ("[*]:") or has run.
RUN_STARTED_JS = """() => [...document.querySelectorAll('PANEL .jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
  .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""".replace("PANEL", PANEL)
ERRORS_JS = """() => [...document.querySelectorAll(
  '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'
)].map(e => e.textContent.slice(0, 2000))"""


def widget_demo_notebook() -> nbformat.NotebookNode:
    """A notebook shaped like chapter 00's sampling cell: a temperature slider and a sample Output."""
    demo = (
        "import ipywidgets as widgets\n"
        "temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.1, description='temperature')\n"
        "sample = widgets.Output()\n"
        "def show(change=None):\n"
        "    sample.clear_output(wait=True)\n"
        "    with sample:\n"
        "        print(f'sampled at T={temperature.value:.1f}: ' + 'ab' * int(10 * temperature.value))\n"
        "temperature.observe(show, names='value')\n"
        "show()\n"
        "display(widgets.VBox([temperature, sample]))"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Widget demo"),
        nbformat.v4.new_code_cell("import os\nSIZE = os.environ['MINILLM_SIZE']", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(demo),
    ]
    return nb


def place_notebook(case: str, root: Path) -> str:
    """Put the case's notebook under the server root; return its path relative to the root."""
    if case == "widget_demo":
        nbformat.write(widget_demo_notebook(), root / "widget_demo.ipynb")
        return "widget_demo.ipynb"
    if not CHAPTER00.is_file():
        pytest.skip(f"{CHAPTER00.relative_to(REPO_ROOT)} does not exist yet")
    (root / "chapters").mkdir(exist_ok=True)
    shutil.copy(CHAPTER00, root / "chapters" / CHAPTER00.name)
    # The chapter runs with chapters/ as its working directory, as in the repo: let ../bench etc. resolve.
    for entry in REPO_ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name != "chapters" and not (root / entry.name).exists():
            (root / entry.name).symlink_to(entry)
    return f"chapters/{CHAPTER00.name}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def start_kernel(server, rel: str) -> None:
    """Start the notebook's Python kernel through the REST API before the page opens it.

    Left to the page, JupyterLab picks the kernel itself and, when its list of kernels arrives late
    (a busy machine), asks in a "Select Kernel" dialog that blocks every click. With a session already
    running for the path, the page simply connects to it."""
    body = json.dumps({"path": rel, "type": "notebook", "name": "", "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(server.url("/api/sessions"), data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=LOAD_TIMEOUT_MS / 1000) as resp:
        assert resp.status == 201, f"could not start a kernel for {rel}: HTTP {resp.status}"


def accept_kernel_dialog(page, wait_ms: int = 3000) -> None:
    """If JupyterLab still asks "Select Kernel" (its kernel list arrived late), accept its default choice."""
    button = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    try:
        button.wait_for(state="visible", timeout=wait_ms)
    except sync_api.TimeoutError:
        return
    button.click()
    button.wait_for(state="hidden", timeout=LOAD_TIMEOUT_MS)


def open_notebook(page, url: str) -> None:
    page.goto(url)
    accept_kernel_dialog(page)
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=LOAD_TIMEOUT_MS)
    accept_kernel_dialog(page, wait_ms=500)


def run_all_cells(page, timeout_ms: int) -> None:
    """Run > Run All Cells, as a reader would, then wait until every code cell has run."""
    # Make this notebook the current widget: click the first cell's prompt area (never a link in its text).
    page.locator(f"{PANEL} .jp-Notebook .jp-Cell .jp-InputArea-prompt").first.click()
    page.locator(".lm-MenuBar-itemLabel").filter(has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item:not(.lm-mod-hidden):not(.lm-mod-disabled) .lm-Menu-itemLabel").filter(
        has_text=re.compile(r"^Run All Cells$")).click()
    try:  # fail in a minute, not after the whole run timeout, when the click did not start anything
        page.wait_for_function(RUN_STARTED_JS, timeout=START_TIMEOUT_MS, polling=250)
    except sync_api.TimeoutError:
        raise AssertionError("Run > Run All Cells started no cell (a dialog in the way? see the screenshot)") from None
    page.wait_for_function(ALL_CELLS_RAN_JS, timeout=timeout_ms, polling=500)
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_ms)


def move_temperature(page, presses: int = 3) -> tuple[str, str]:
    """Nudge the slider described "temperature" with the keyboard; return its readout before and after."""
    slider = page.locator(f"{PANEL} .widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile("temperature", re.I))).first
    slider.wait_for(state="visible", timeout=LOAD_TIMEOUT_MS)
    readout = slider.locator(".widget-readout")
    before = readout.inner_text()
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(presses):
        handle.press("ArrowRight")
    return before, readout.inner_text()


@pytest.mark.parametrize("case", ["widget_demo", "chapter00"])
def test_temperature_slider_changes_sample(case: str, lab_server, browser, tmp_path: Path) -> None:
    rel = place_notebook(case, lab_server.root)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    try:
        start_kernel(lab_server, rel)
        # a workspace of its own per case, reset: tabs left open by an earlier case are not restored
        open_notebook(page, lab_server.url(f"/lab/workspaces/{case}/tree/{rel}?reset"))
        run_all_cells(page, RUN_TIMEOUT_MS[case])
        sample_before = page.evaluate(SAMPLE_TEXT_JS)
        readout_before, readout_after = move_temperature(page)
        assert readout_after != readout_before, f"the slider did not move (readout stayed {readout_before})"
        page.wait_for_function(f"(before) => ({SAMPLE_TEXT_JS})() !== before", arg=sample_before,
                               timeout=SAMPLE_TIMEOUT_MS, polling=250)
        assert page.evaluate(SAMPLE_TEXT_JS) != sample_before
    except Exception as exc:
        shot = tmp_path / f"{case}-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        errors = "\n".join(page.evaluate(ERRORS_JS))
        raise AssertionError(
            f"{case}: {exc}\nscreenshot: {shot}\nerrors in the notebook:\n{errors or '(none)'}\n"
            f"browser console (last 20):\n" + "\n".join(console[-20:]) +
            f"\nserver log (tail):\n{lab_server.log_tail(2000)}"
        ) from exc
    finally:
        context.close()


# One cell per chapter: its main widget, from shipped records or a tiny untrained model (no training here).
CHAPTER_WIDGETS = {
    "01": 'from book.ch01_scaling_laws import plots as p01\nw = p01.law_explorer("hoffmann2022_approach3")',
    "02": 'from book.ch02_emergence import plots as p02\n'
          'w = p02.EmergenceWidget(p02.shipped_emergence_studies()["size_sweep"]["rows"])',
    "03": 'from book.ch03_data import plots_experiments as p03\n'
          'w = p03.MixtureExplorer(p03.shipped_experiments()["mixture"]["rows"])',
    "04": 'from book.ch04_architectures.plots_calculator import ArchCalculator\nw = ArchCalculator.from_preset("gpt2-124m")',
    "05": 'from book.ch05_training.plots_accounting import ComputeExplorer\nw = ComputeExplorer()',
    "06": 'from book.ch06_tuning import plots as p06\nw = p06.KLWidget(p06.shipped_finetune_studies()["kl_sweep"]["rows"])',
    "07": 'import torch\nfrom minillm import GPT, ModelConfig\nfrom minillm.data.tokenizer import CharTokenizer\n'
          'from book.ch07_utilization_eval import plots as p07, studies as s07\n'
          'tok = CharTokenizer.from_text(s07.chapter_text(2000))\ntorch.manual_seed(0)\n'
          'm = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)).eval()\n'
          'w = p07.DecodingWidget(s07.ChapterModel("untrained", 0, m, tok, ""), s07.story_prompts(1)[0], max_new_tokens=40)',
    "08": 'from book.ch08_kernels import plots as p08\nw = p08.RooflineWidget(rows=8192, hidden=4096, vocab=128256)',
    "09": 'import torch\nfrom minillm import GPT, ModelConfig\n'
          'from book.ch09_capstone.studies_corpus import capstone_corpus, capstone_tokenizer\n'
          'from book.ch09_capstone.plots_use import SamplingWidget\n'
          'tok9 = capstone_tokenizer(capstone_corpus("ci"), 512)\ntorch.manual_seed(0)\n'
          'm9 = GPT(ModelConfig(vocab_size=tok9.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=32)).eval()\n'
          'w = SamplingWidget(m9, tok9, title="秋夜", form="七言絕句")',
}
# What a reader sees in one cell's output, minus the controls themselves: the figure (its image data), text, HTML.
CELL_VIEW_JS = """(i) => {
  const cell = document.querySelectorAll('PANEL .jp-Notebook .jp-CodeCell')[i];
  const clone = cell.querySelector('.jp-Cell-outputWrapper').cloneNode(true);
  clone.querySelectorAll('.widget-slider, .widget-dropdown, .widget-toggle-buttons').forEach(e => e.remove());
  return clone.textContent + [...clone.querySelectorAll('img')].map(im => im.src).join('|');
}""".replace("PANEL", PANEL)


def chapter_widgets_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(f"# chapter {ch}\n{src}\ndisplay(w.widget)")
                for ch, src in CHAPTER_WIDGETS.items()]
    return nb


def nudge_first_control(page, cell):
    """Move the cell's first slider with the keyboard (ArrowRight, or ArrowLeft at the top of its range); with no
    slider, choose the next option of its first dropdown. Returns what moved, for the failure message."""
    sliders = cell.locator(".widget-slider")
    if sliders.count():
        slider = sliders.first
        readout = slider.locator(".widget-readout")
        before = readout.inner_text()
        handle = slider.locator(".noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        for key in ("ArrowRight", "ArrowLeft"):
            for _ in range(2):
                handle.press(key)
            if readout.inner_text() != before:
                return f"slider {slider.locator('.widget-label').inner_text()!r}: {before} -> {readout.inner_text()}"
        raise AssertionError(f"the slider did not move (readout stayed {before})")
    select = cell.locator(".widget-dropdown select").first
    select.scroll_into_view_if_needed()
    options = select.locator("option").all_inner_texts()
    current = select.input_value()
    values = select.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert len(values) > 1, f"a dropdown with one option cannot move: {options}"
    select.select_option(values[(values.index(current) + 1) % len(values)])
    return f"dropdown: {current} -> {select.input_value()}"


def test_every_chapters_main_widget_answers(lab_server, browser, tmp_path: Path) -> None:
    nbformat.write(chapter_widgets_notebook(), lab_server.root / "chapter_widgets.ipynb")
    rel = "chapter_widgets.ipynb"
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    chapter = "(before the first cell)"
    try:
        start_kernel(lab_server, rel)
        open_notebook(page, lab_server.url(f"/lab/workspaces/chapter_widgets/tree/{rel}?reset"))
        run_all_cells(page, RUN_TIMEOUT_MS["chapter_widgets"])
        cells = page.locator(f"{PANEL} .jp-Notebook .jp-CodeCell")
        assert cells.count() == len(CHAPTER_WIDGETS)
        for i, chapter in enumerate(CHAPTER_WIDGETS):
            cell = cells.nth(i)
            cell.locator(".jp-OutputArea-output .widget-box").first.wait_for(state="visible",
                                                                              timeout=LOAD_TIMEOUT_MS)
            before = page.evaluate(CELL_VIEW_JS, i)
            moved = nudge_first_control(page, cell)
            try:
                page.wait_for_function(f"([i, before]) => ({CELL_VIEW_JS})(i) !== before", arg=[i, before],
                                       timeout=SAMPLE_TIMEOUT_MS, polling=250)
            except sync_api.TimeoutError:
                raise AssertionError(f"chapter {chapter}: {moved}, but its output did not change") from None
    except Exception as exc:
        shot = tmp_path / "chapter-widgets-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        errors = "\n".join(page.evaluate(ERRORS_JS))
        raise AssertionError(
            f"chapter {chapter}: {exc}\nscreenshot: {shot}\nerrors in the notebook:\n{errors or '(none)'}\n"
            f"browser console (last 20):\n" + "\n".join(console[-20:]) +
            f"\nserver log (tail):\n{lab_server.log_tail(2000)}"
        ) from exc
    finally:
        context.close()
