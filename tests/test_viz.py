"""`netc viz`: DOT, SVG, PNG and the interactive HTML page.

The browser tests load the HTML pages of resnet50 and densenet121 in headless Chromium
(Debian's, driven by Playwright; `.ci/run` installs it) and skip, saying why, only where
no browser exists. Screenshots go to the pytest temporary folder (printed with -s).
"""

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import ROOT, run_netc
from hypothesis import HealthCheck, given, settings
from netc.backends import viz
from netc.compiler import compile_file, compile_string
from netc.dsl.diagnostics import NetcError
from test_fuzz import mutated

SVG = "{http://www.w3.org/2000/svg}"
EXAMPLES = ROOT / "examples"


def svg_ids(path, cls):
    """The ids of the <g class="cls ..."> elements of an SVG file (it must parse)."""
    root = ET.parse(path).getroot()
    return {g.get("id") for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()}


def model_of(name, **options):
    compiled = compile_file(EXAMPLES / f"{name}.net")
    return compiled, viz.build_model(compiled.graph, sources=compiled.sources, options=viz.Options(**options)).to_json()


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_svg_has_a_node_for_every_box(tmp_path, name):
    compiled, model = model_of(name)
    out = tmp_path / f"{name}.svg"
    proc = run_netc("viz", EXAMPLES / f"{name}.net", "-o", out)
    assert proc.returncode == 0, proc.stderr
    drawn = svg_ids(out, "node")
    assert drawn == set(model["children"][""])  # inputs, top-level layers, block boxes, outputs
    assert {b for b, entry in model["blocks"].items() if entry["parent"] is None} <= drawn
    text = out.read_text()
    assert re.search(r'xlink:href="[^"]*' + name + r'\.net#L\d+"', text)  # each node links to its line

    out = tmp_path / f"{name}-expanded.svg"
    proc = run_netc("viz", EXAMPLES / f"{name}.net", "-o", out, "--expand")
    assert proc.returncode == 0, proc.stderr
    layers = {n for n in model["nodes"] if n.startswith("n")}
    assert svg_ids(out, "node") == layers | {n for n in model["nodes"] if n.startswith("o")}
    assert svg_ids(out, "cluster") == set(model["blocks"])
    assert len(layers) == len([n for n in compiled.graph.nodes() if n.op != "constant"])


def test_dot_png_and_html_files(tmp_path):
    spec = EXAMPLES / "resnet18.net"
    for suffix in ("dot", "png", "html"):
        out = tmp_path / f"r.{suffix}"
        proc = run_netc("viz", spec, "-o", out, "--paths")
        assert proc.returncode == 0, proc.stderr
        assert "nodes and boxes drawn" in proc.stderr
    assert (tmp_path / "r.dot").read_text().startswith("digraph netc {")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "Viz.instance" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from the network


def test_paths_colour_edges_by_count():
    """In a U-Net the long skips carry few of the input's paths, the bottleneck all."""
    _, model = model_of("unet")
    dot = viz.assemble(model, model["blocks"], colour_paths=True)
    colours = set(re.findall(r'color="(#[0-9a-f]{6})", penwidth', dot))
    assert colours <= set(viz.PALETTE) and len(colours) >= 3
    _, model = model_of("densenet121")
    plain = viz.assemble(model, [])
    assert set(re.findall(r'color="(#[0-9a-f]{6})", penwidth', plain)) <= {viz.MAIN_COLOR, viz.SKIP_COLOR}


def test_skip_edges_stand_out():
    _, model = model_of("resnet50")
    expanded = list(model["blocks"])
    dot = viz.assemble(model, expanded)
    skips = re.findall(r'class="skip"', dot)
    assert len(skips) == 16 + 4 * 2  # every add's shortcut; a projection is a chain of 3 edges
    graph = compile_file(EXAMPLES / "densenet121.net").graph
    assert len(viz._skip_edges(graph)) == 58  # one per dense layer: the concat of what came before


def test_kinds_look_different():
    spec = """
network kinds(x: [N, 4], target: [N, 8]) {
    h = x -> linear(4) -> relu
    y = concat(h + x, h, axis=1)
    return mse_loss(y, target)
}
"""
    compiled = compile_string(spec)
    model = viz.build_model(compiled.graph).to_json()
    shape = {info["title"]: model["nodes"][i]["dot"].split(",")[0] for i, info in model["info"].items() if i[0] == "n"}
    assert shape["linear_0"] == "shape=box" and "rounded" in model["nodes"][model_id(model, "linear_0")]["dot"]
    assert shape["relu_0"] == "shape=ellipse"
    assert shape["add_0"] == "shape=circle"
    assert shape["concat_0"] == "shape=invtrapezium"
    assert shape["mse_loss_0"] == "shape=octagon"
    assert shape["x"] == "shape=invhouse"


def model_id(model, title):
    return next(i for i, info in model["info"].items() if info["title"] == title)


def test_usage_and_spec_errors(tmp_path):
    spec = EXAMPLES / "resnet18.net"
    proc = run_netc("viz", spec, "-o", tmp_path / "r.jpg")
    assert proc.returncode == 2 and ".svg, .html, .dot or .png" in proc.stderr
    proc = run_netc("viz", spec)
    assert proc.returncode == 2
    bad = tmp_path / "bad.net"
    bad.write_text("network b(x: [N, 4]) {\n    return x -> linear(4) + x -> linear(5)\n}\n")
    proc = run_netc("viz", bad, "-o", tmp_path / "b.svg")
    assert proc.returncode == 1 and "bad.net:2" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b.svg").exists()
    proc = run_netc("viz", spec, "-o", tmp_path / "no" / "such" / "dir.svg")
    assert proc.returncode == 1 and "cannot write" in proc.stderr


def test_hostile_text_is_escaped(tmp_path):
    """A spec line, a file name and a string attribute cannot break out of DOT, SVG or HTML."""
    folder = tmp_path / 'we"ird <b>\\N'
    folder.mkdir()
    spec = folder / "x.net"
    spec.write_text(
        "network hostile(x: [N, 3, 8, 8]) {\n"
        '    y = x -> upsample(scale=2, mode="nearest")  # </script><script>alert(1)</script> \\G "q" ]; a -> b\n'
        "    return y -> conv2d(4, kernel=1)\n"
        "}\n"
    )
    for suffix in ("svg", "html", "dot"):
        out = tmp_path / f"h.{suffix}"
        proc = run_netc("viz", spec, "-o", out)
        assert proc.returncode == 0, proc.stderr
    ET.parse(tmp_path / "h.svg")
    page = (tmp_path / "h.html").read_text()
    assert "<script>alert(1)" not in page
    model = json.loads(re.search(r'<script type="application/json" id="netc-model">(.*?)</script>', page, re.S)[1])
    lines = [info.get("line", "") for info in model["info"].values()]
    assert any("</script><script>alert(1)</script>" in line for line in lines)  # kept as text


def test_a_huge_network_is_drawn_grouped_and_fast(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from check_speed import deep_spec

    spec = tmp_path / "deep.net"
    spec.write_text(deep_spec(3000, "repeat"))
    out = tmp_path / "deep.svg"
    proc = run_netc("viz", spec, "-o", out, "--expand", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "note:" in proc.stderr and "collapsed" in proc.stderr
    assert len(svg_ids(out, "node")) <= viz.NODE_LIMIT
    text = out.read_text()
    assert "drawn collapsed" in text  # the note is in the picture too


def test_backward_graphs_draw_with_their_factors():
    """The renderer takes any graph IR: product steps of a backward graph show their factor."""
    autodiff = pytest.importorskip("netc.compiler.autodiff")
    compiled = compile_string(
        "network s(x: [N, 4]) {\n    return x -> linear(4) -> sigmoid -> linear(2)\n}\n", file="s.net"
    )
    graph = autodiff.backward_graph(compiled.graph)
    model = viz.build_model(graph, sources=compiled.sources).to_json()
    dot = viz.assemble(model, model["blocks"])
    assert "&#183; " in dot  # `· σ(x)(1−σ(x))`-style labels on the element-wise products
    assert ET.fromstring(viz.layout(dot, "svg"))


def test_backward_picture_of_resnet18(tmp_path):
    """`--backward`: the product steps are drawn with their factors, gradient edges point
    back, and each block box holds the backward of its own layers."""
    out = tmp_path / "r.svg"
    proc = run_netc("viz", EXAMPLES / "resnet18.net", "-o", out, "--backward")
    assert proc.returncode == 0, proc.stderr
    compiled = compile_file(EXAMPLES / "resnet18.net")
    model = viz.build_model(compiled.graph, options=viz.Options(backward=True)).to_json()
    drawn = svg_ids(out, "node")
    assert drawn == set(model["children"][""])
    root = ET.parse(out).getroot()
    texts = {g.get("id"): " ".join(t.text or "" for t in g.iter(f"{SVG}text")) for g in root.iter(f"{SVG}g")}
    products = {i: info for i, info in model["info"].items() if info["kind"] == "product"}
    graph = compiled.backward_graph()
    assert len(products) == len(graph.factors) == 37  # 17 relus and every batchnorm's 1/(2 sqrt x)
    shown = [i for i in products if i in drawn]
    assert shown  # the stem's relu and maxpool are not in a block
    for i in shown:
        assert "mul" in texts[i] and "\u00b7 " + products[i]["factor"] in texts[i]
    assert svg_ids(out, "grad") and svg_ids(out, "saved")  # gradient edges, and values they read
    text = out.read_text()
    assert "\u2202 linear_0" in text  # the backward of the head is one box

    def top(item):
        entry = model["nodes"].get(item) or model["blocks"][item]
        while entry["parent"]:
            item = entry["parent"]
            entry = model["blocks"][item]
        return model["info"].get(item, {}).get("title", item)

    for i, info in model["info"].items():
        if info["title"].startswith("grad.stage_"):  # a block's backward stays in its block's box
            assert top(i) == info["title"].split(".")[1], info["title"]
    dot = viz.assemble(model, model["blocks"])  # and everything opens
    assert dot.count("dir=back") > 100


def test_gradflow_colours_each_layer(tmp_path):
    out = tmp_path / "g.svg"
    proc = run_netc("viz", EXAMPLES / "residual_deep.net", "-o", out, "--gradflow", "--expand")
    assert proc.returncode == 0, proc.stderr
    from netc.compiler import gradflow

    compiled = compile_file(EXAMPLES / "residual_deep.net")
    norms = gradflow.measure(compiled).norms()
    model = viz.build_model(compiled.graph, options=viz.Options(gradflow=norms)).to_json()
    root = ET.parse(out).getroot()
    fills = {}
    for g in root.iter(f"{SVG}g"):
        if "node" in (g.get("class") or "").split():
            shape = next(e for e in g.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon", f"{SVG}ellipse"))
            fills[g.get("id")] = shape.get("fill")
    layers = {i: info for i, info in model["info"].items() if info.get("grad_norm") is not None}
    assert len(layers) == len(norms) == 20 + 19  # every conv, batchnorm and linear
    low, high = min(norms.values()), max(norms.values())
    for i, info in layers.items():
        assert info["grad_norm"] == norms[info["title"]]
        step = round((np.log(info["grad_norm"]) - np.log(low)) / (np.log(high) - np.log(low)) * 8)
        assert fills[i] == viz.NORM_PALETTE[step], info["title"]
    assert len({fills[i] for i in layers}) >= 4
    assert "gradient norm reaching it at initialization" in out.read_text()
    proc = run_netc("viz", EXAMPLES / "transformer.net", "-o", tmp_path / "t.svg", "--gradflow")
    assert proc.returncode == 2 and "dimension T" in proc.stderr
    proc = run_netc("viz", EXAMPLES / "transformer.net", "-o", tmp_path / "t.svg", "--gradflow", "--dim", "T=4")
    assert proc.returncode == 0, proc.stderr


def test_check_does_not_import_the_viz_backend():
    import subprocess
    import sys

    code = "import sys; from netc.compiler.cli import main; main(['check', sys.argv[1]]); print(sorted(sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "dqn.net")], capture_output=True, text=True)
    assert "netc.backends.viz" not in proc.stdout and "netc.compiler.paths" not in proc.stdout
    assert "netc.compiler.gradflow" not in proc.stdout and "matplotlib" not in proc.stdout


# ---------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield browser
        browser.close()


def open_page(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: r.url.startswith(("file:", "data:")) or problems.append("request " + r.url))
    page.goto(path.as_uri())
    page.wait_for_function("window.netc && window.netc.ready")
    return page, problems


def visible_box(page, element_id):
    box = page.locator(f"[id='{element_id}']").first.bounding_box()
    return box is not None and box["width"] > 0 and box["height"] > 0


@pytest.mark.parametrize(
    "name, block, inner",
    [("resnet50", "stage_1", "stage_1.bottleneck_0"), ("densenet121", "dense_block_2", "dense_block_2.dense_layer_0")],
)
def test_html_page_in_chromium(browser, tmp_path, name, block, inner):
    compiled, model = model_of(name, links=False)
    out = tmp_path / f"{name}.html"
    proc = run_netc("viz", EXAMPLES / f"{name}.net", "-o", out)
    assert proc.returncode == 0, proc.stderr
    page, problems = open_page(browser, out)
    page.screenshot(path=str(tmp_path / f"{name}-collapsed.png"))
    # every top-level block box is drawn
    by_title = {info["title"]: i for i, info in model["info"].items()}
    top = [b for b, entry in model["blocks"].items() if entry["parent"] is None]
    assert top and all(visible_box(page, b) for b in top)
    # the page's own assembly of DOT equals the one netc laid out
    same = page.evaluate("netc.assemble(netc.model, netc.expanded, netc.state.colourPaths).dot === netc.state.dot")
    assert same
    page_model = json.loads(page.evaluate("JSON.stringify(netc.model)"))
    every = sorted(page_model["blocks"])
    js = page.evaluate("(ids) => netc.assemble(netc.model, new Set(ids), true).dot", every)
    assert js == viz.assemble(page_model, every, colour_paths=True)  # clusters, colours, legend
    # clicking a block opens it: its items are drawn inside its frame
    bid = by_title[block]
    page.locator(f"g.node[id='{bid}']").click()
    page.wait_for_selector(f"g.cluster[id='{bid}']")
    assert all(visible_box(page, item) for item in model["children"][bid])
    page.screenshot(path=str(tmp_path / f"{name}-opened.png"))
    # the search box finds a layer inside a closed block and shows it
    layer = next(t for t in by_title if t.startswith(inner + ".") and model["info"][by_title[t]]["op"] == "conv2d")
    page.fill("#search", layer)
    page.press("#search", "Enter")
    page.wait_for_selector(f"g.node.found[id='{by_title[layer]}']")
    box = page.locator(f"[id='{by_title[layer]}']").bounding_box()
    view = page.locator("#view").bounding_box()
    assert view["x"] <= box["x"] and box["x"] + box["width"] <= view["x"] + view["width"]
    assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"]
    assert layer in page.inner_text("#panel")
    # clicking a layer highlights its gradient paths to the output
    page.locator(f"g.node[id='{by_title[layer]}']").click()
    assert page.locator("g.edge.hl").count() > 0
    assert "gradient paths" in page.inner_text("#status")
    page.screenshot(path=str(tmp_path / f"{name}-found.png"))
    # expand everything, then close it again
    page.click("#expand-all")
    page.wait_for_function(f"document.querySelectorAll('g.cluster').length === {len(model['blocks'])}", timeout=60000)
    page.click("#collapse-all")
    page.wait_for_function("document.querySelectorAll('g.cluster').length === 0")
    assert problems == []
    print(f"screenshots of {name} in {tmp_path}")
    if os.environ.get("NETC_SCREENSHOTS"):  # keep them: NETC_SCREENSHOTS=folder pytest -k chromium
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, os.environ["NETC_SCREENSHOTS"])


# ---------------------------------------------------------------- any graph


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutated())
def test_any_compiling_spec_draws(text):
    """Mutated examples that still compile give a model, DOT in every expansion and path
    statistics, without an exception (the DOT is parsed by the layout tests above)."""
    try:
        compiled = compile_string(text, max_nodes=20_000)
    except NetcError:
        return
    model = viz.build_model(compiled.graph, sources=compiled.sources).to_json()
    for expand in (False, True):
        opened, _ = viz.initial_expansion(model, expand)
        assert viz.assemble(model, opened, colour_paths=expand).startswith("digraph netc {")


def test_backward_and_gradflow_page_in_chromium(browser, tmp_path):
    """The page of `--backward --gradflow`: it loads without a console error, assembles
    the DOT netc laid out, opens a block holding both halves and shows a layer's norm."""
    out = tmp_path / "residual_deep.html"
    proc = run_netc("viz", EXAMPLES / "residual_deep.net", "-o", out, "--backward", "--gradflow")
    assert proc.returncode == 0, proc.stderr
    page, problems = open_page(browser, out)
    assert page.evaluate("netc.assemble(netc.model, netc.expanded, netc.state.colourPaths).dot === netc.state.dot")
    model = json.loads(page.evaluate("JSON.stringify(netc.model)"))
    every = sorted(model["blocks"])
    for colour in (False, True):
        js = page.evaluate("([ids, c]) => netc.assemble(netc.model, new Set(ids), c).dot", [every, colour])
        assert js == viz.assemble(model, every, colour_paths=colour)  # gradient and saved edges, captions
    by_title = {info["title"]: i for i, info in model["info"].items()}
    page.screenshot(path=str(tmp_path / "backward-collapsed.png"))
    # a block box holds its forward layers and their backward: opening it draws both
    stage = by_title["stage_0"]
    page.locator(f"g.node[id='{stage}']").click()
    page.wait_for_selector(f"g.cluster[id='{stage}']")
    assert all(visible_box(page, item) for item in model["children"][stage])
    pair = by_title["stage_0.pair_0"]
    page.locator(f"g.node[id='{pair}']").click()
    page.wait_for_selector(f"g.cluster[id='{pair}']")
    inside = [model["info"][i]["title"] for i in model["children"][pair]]
    assert "grad.stage_0.pair_0.batchnorm_0" in inside and "stage_0.pair_0.conv2d_0" in inside
    page.screenshot(path=str(tmp_path / "backward-opened.png"))
    # the panel gives a layer's gradient norm, and a block's range
    conv = by_title["stage_0.pair_0.conv2d_0"]
    page.evaluate("(id) => netc.reveal(id)", conv)
    panel = page.inner_text("#panel")
    assert "gradient norm at init" in panel
    assert f"{model['info'][conv]['grad_norm']:.3e}".replace("e+0", "e+").replace("e-0", "e-") in panel
    page.evaluate("(id) => netc.reveal(id)", by_title["stage_1"])
    assert "gradient norms at init" in page.inner_text("#panel")
    assert problems == []
    if os.environ.get("NETC_SCREENSHOTS"):
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, os.environ["NETC_SCREENSHOTS"])
