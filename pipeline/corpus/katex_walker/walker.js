#!/usr/bin/env node
// Raw LaTeX formulas -> the im2latex-100k token format, with KaTeX's parser (pinned in
// package-lock.json) and this walker over its parse tree.
//
// Usage: node walker.js KATEX_FOLDER. One process for a whole list: each stdin line is one formula as a JSON string; each stdout
// line answers it, in order, with {"tokens": "..."} or {"error": "KaTeX's message"}.
// pipeline/corpus/normalize.py drives it and owns the files; the rules are in README.md.
//
// KaTeX expands many commands into others (\, into a 3mu kern, \dots into \ldots, \bf and
// \mathbf into one node) and parses environments into bare arrays. The token format keeps
// the names authors wrote, so the commands below are redefined to parse into nodes that remember
// their names, and \begin reads every environment's rows itself.
"use strict";

// The installed KaTeX, whose folder normalize.py passes (make deps installs it outside the package).
const katex = require(process.argv[2] || "katex");
const readline = require("readline");

// --- commands kept by name --------------------------------------------------------------------

// Spacing and symbols that KaTeX's macros would expand into something else, and commands it does
// not know that the format keeps as written (\kern - . 1 8 e m: its length follows as tokens).
const KEEP_SYMBOLS = `\\, \\; \\: \\! \\quad \\qquad \\enspace \\thinspace \\medspace \\thickspace
  \\negthinspace \\negmedspace \\negthickspace ~ \\cdots \\dots \\vdots \\dotsb \\dotsc
  \\dotsi \\dotsm \\dotso \\neq \\ne \\not \\notin \\imath \\jmath \\colon \\AA \\aa \\iff
  \\implies \\impliedby \\bmod \\mod \\nonumber \\notag \\hfill \\hfil \\smallskip \\medskip
  \\bigskip \\mathstrut \\strut \\l \\L \\o \\O \\ae \\AE \\oe \\OE \\ss \\i \\j \\protect
  \\relax \\slash \\d \\b \\- \\* \\kern \\mkern \\hskip \\mskip \\raise \\lower \\buildrel
  \\setlength \\unitlength \\linethickness \\thicklines \\thinlines`.split(/\s+/);

// Commands with arguments, one letter per argument: "m" math, braced in the output; "w" math,
// braced only where the author braced it (the format writes \frac 1 2 and \mathbf x, but
// \hat { N }); "t" text; "r" raw text such as a length; "o" an optional raw [argument] first.
const ACCENTS = `\\hat \\bar \\tilde \\vec \\dot \\ddot \\dddot \\check \\breve \\acute \\grave
  \\mathring \\overline \\underline \\overbrace \\underbrace \\overrightarrow \\overleftarrow
  \\overleftrightarrow \\underrightarrow \\underleftarrow \\underleftrightarrow`.split(/\s+/);
const FONTS = `\\mathrm \\mathbf \\mathcal \\mathit \\mathsf \\mathtt \\mathbb \\mathfrak \\mathscr
  \\mathnormal \\boldsymbol \\bm \\widehat \\widetilde`.split(/\s+/);
const TEXTS = `\\textrm \\textbf \\textit \\textsf \\texttt \\textup \\textnormal \\textsl \\textsc
  \\textmd \\emph`.split(/\s+/);
const KEEP_WITH_ARGUMENTS = {
  ...Object.fromEntries(ACCENTS.map((name) => [name, "m"])),
  ...Object.fromEntries(FONTS.map((name) => [name, "w"])),
  ...Object.fromEntries(TEXTS.map((name) => [name, "t"])),
  "\\hspace": "r",
  "\\hspace*": "r",
  "\\vspace": "r",
  "\\vspace*": "r",
  "\\hphantom": "m",
  "\\phantom": "m",
  "\\vphantom": "w",
  "\\smash": "m",
  "\\stackrel": "mm",
  "\\overset": "mm",
  "\\underset": "mm",
  "\\pmod": "m",
  "\\pod": "m",
  "\\rlap": "m",
  "\\llap": "m",
  "\\boxed": "m",
  "\\fbox": "m", // as math, as the format has it: \fbox { \displaystyle ... }
  "\\pmb": "m",
  "\\mathop": "m",
  "\\mathrel": "m",
  "\\mathbin": "m",
  "\\mathord": "m",
  "\\mathopen": "m",
  "\\mathclose": "m",
  "\\mathpunct": "m",
  "\\mathinner": "m",
  "\\raisebox": "rt",
  "\\makebox": "t",
  "\\lefteqn": "m",
  "\\substack": "m",
  "\\binom": "mm",
  "\\dbinom": "mm",
  "\\tbinom": "mm",
  "\\dfrac": "mm",
  "\\tfrac": "mm",
  "\\cfrac": "mm",
};

// Switches that apply to the rest of their group: kept as written, except \rm, which the
// format writes as \mathrm { ... } (im2markup's rule).
const SWITCHES = `\\bf \\it \\cal \\sf \\tt \\sl \\sc \\mit \\em \\boldmath \\unboldmath
  \\displaystyle \\textstyle \\scriptstyle \\scriptscriptstyle \\tiny \\scriptsize
  \\footnotesize \\small \\normalsize \\large \\Large \\LARGE \\huge \\Huge \\rm`.split(/\s+/);

// Text boxes the format writes as \mathrm, a space inside them as ~ (im2markup's rule).
const TEXT_AS_MATHRM = ["\\mbox", "\\hbox", "\\text"];

// Environments the walker reads, with the raw arguments each takes: "o" optional, "r" braced.
// The format has no place for equation numbering environments: align and gather become their
// inner forms, eqnarray an array of its three columns.
const ENVIRONMENTS = {
  array: { args: "or" },
  subarray: { args: "r" },
  matrix: {},
  pmatrix: {},
  bmatrix: {},
  Bmatrix: {},
  vmatrix: {},
  Vmatrix: {},
  smallmatrix: {},
  cases: {},
  aligned: {},
  alignedat: { args: "r" },
  gathered: {},
  split: {},
  align: { as: "aligned" },
  "align*": { as: "aligned" },
  gather: { as: "gathered" },
  "gather*": { as: "gathered" },
  eqnarray: { as: "array", spec: "rcl" },
  "eqnarray*": { as: "array", spec: "rcl" },
};

const KATEX_OPTIONS = {
  displayMode: true,
  throwOnError: true,
  strict: "ignore",
  trust: false,
  maxExpand: 1000,
  macros: {},
};

function keepNode(parser, name, args, kinds = "") {
  return { type: "keep", mode: parser.mode, name, args, kinds };
}

function defineKept() {
  const macros = KATEX_OPTIONS.macros;
  for (const name of KEEP_SYMBOLS) {
    macros[name] = null; // a null macro is not expanded: the parser sees the command itself
    katex.__defineFunction({
      type: "keep",
      names: [name],
      props: { numArgs: 0, allowedInText: true },
      handler: ({ parser, funcName }) => keepNode(parser, funcName, []),
    });
  }
  for (const [name, kinds] of Object.entries(KEEP_WITH_ARGUMENTS)) {
    macros[name] = null;
    const optional = kinds.includes("o") ? 1 : 0;
    katex.__defineFunction({
      type: "keep",
      names: [name],
      props: {
        numArgs: kinds.replace("o", "").length,
        numOptionalArgs: optional,
        argTypes: [...kinds.replace("o", "")].map((k) => ({ r: "raw", t: "text" })[k] || "math"),
        allowedInText: true,
        allowedInArgument: true,
      },
      handler: ({ parser, funcName }, args, optArgs) =>
        optional && !optArgs[0]
          ? keepNode(parser, funcName, args, kinds.replace("o", ""))
          : keepNode(parser, funcName, [...optArgs.filter(Boolean), ...args], kinds),
    });
  }
  for (const name of SWITCHES) {
    macros[name] = null;
    katex.__defineFunction({
      type: "switch",
      names: [name],
      props: { numArgs: 0, allowedInText: true },
      handler: ({ parser, funcName, breakOnTokenText }) => ({
        type: "switch",
        mode: parser.mode,
        name: funcName,
        body: parser.parseExpression(true, breakOnTokenText),
      }),
    });
  }
  for (const name of TEXT_AS_MATHRM) {
    macros[name] = null;
    katex.__defineFunction({
      type: "keep",
      names: [name],
      props: { numArgs: 1, argTypes: ["text"], allowedInText: true, allowedInArgument: true },
      handler: ({ parser }, args) => keepNode(parser, "\\mathrm", args, "t"),
    });
  }
  for (const name of ["\\label", "\\tag", "\\tag*"]) {
    macros[name] = null;
    katex.__defineFunction({
      type: "dropped",
      names: [name],
      props: { numArgs: 1, argTypes: ["raw"], allowedInText: true },
      handler: ({ parser }) => ({ type: "dropped", mode: parser.mode }),
    });
  }
  macros["\\sp"] = "^";
  macros["\\sb"] = "_";
  katex.__defineFunction({
    type: "environment",
    names: ["\\begin", "\\end"],
    props: { numArgs: 1, argTypes: ["text"] },
    handler: readEnvironment,
  });
}

// --- environments -----------------------------------------------------------------------------

function environmentName(parser, group) {
  if (group.type !== "ordgroup") throw new katex.ParseError("Invalid environment name");
  return group.body.map((c) => c.text).join("");
}

function readEnvironment({ parser, funcName }, args) {
  const name = environmentName(parser, args[0]);
  if (funcName === "\\end") return { type: "environment", mode: parser.mode, name };
  const env = ENVIRONMENTS[name];
  if (!env) throw new katex.ParseError(`No such environment: ${name}`);
  const spec = [];
  for (const kind of env.args || "") {
    const token = parser.parseStringGroup("raw", kind === "o");
    if (token) spec.push({ optional: kind === "o", text: token.text });
  }
  if (env.spec) spec.push({ optional: false, text: env.spec });
  const rows = readRows(parser);
  parser.expect("\\end", false);
  const end = parser.parseFunction();
  if (!end || end.type !== "environment" || end.name !== name) {
    throw new katex.ParseError(`Mismatch: \\begin{${name}} matched by \\end{${end && end.name}}`);
  }
  return { type: "env", mode: parser.mode, name: env.as || name, spec, rows };
}

function readHlines(parser) {
  const lines = [];
  parser.consumeSpaces();
  while (["\\hline", "\\hdashline"].includes(parser.fetch().text)) {
    lines.push(parser.fetch().text);
    parser.consume();
    parser.consumeSpaces();
  }
  return lines;
}

// Rows of cells up to \end; a last row holding one empty cell (after a final \\) is no row.
function readRows(parser) {
  const rows = [];
  let row = { hlines: readHlines(parser), cells: [] };
  for (;;) {
    row.cells.push(parser.parseExpression(false, "\\\\"));
    const next = parser.fetch().text;
    if (next === "&") {
      parser.consume();
    } else if (next === "\\\\" || next === "\\cr") {
      parser.consume();
      if (parser.fetch().text === "[") parser.parseStringGroup("raw", true); // a row gap
      rows.push(row);
      row = { hlines: readHlines(parser), cells: [] };
    } else if (next === "\\end") {
      if (row.cells.length > 1 || row.cells[0].length > 0) rows.push(row);
      else if (row.hlines.length) rows.push({ hlines: row.hlines, cells: null });
      return rows;
    } else {
      throw new katex.ParseError(`Expected & or \\\\ or \\end, got ${next}`);
    }
  }
}

// --- the walker -------------------------------------------------------------------------------

const DELIMITER_SIZES = {
  "mopen 1": "\\bigl", "mopen 2": "\\Bigl", "mopen 3": "\\biggl", "mopen 4": "\\Biggl",
  "mclose 1": "\\bigr", "mclose 2": "\\Bigr", "mclose 3": "\\biggr", "mclose 4": "\\Biggr",
  "mrel 1": "\\bigm", "mrel 2": "\\Bigm", "mrel 3": "\\biggm", "mrel 4": "\\Biggm",
  "mord 1": "\\big", "mord 2": "\\Big", "mord 3": "\\bigg", "mord 4": "\\Bigg",
};

class Unsupported extends Error {}

let substacks = 0; // how many \substack arguments the walk is inside

function characters(text) {
  return [...text].filter((c) => c.trim() !== "");
}

// KaTeX wraps every argument in a group; the source shows whether the author braced it.
const writtenBraced = (group) => !group.loc || group.loc.lexer.input[group.loc.start] === "{";

// Tokens inside braces, once: an argument the author braced is not braced again.
function braced(node, out) {
  out.push("{");
  if (node) walkAll(Array.isArray(node) ? node : node.type === "ordgroup" ? node.body : [node], out);
  out.push("}");
}

const isDash = (node) => ["atom", "textord"].includes(node.type) && node.text === "-";
const adjacent = (a, b) => a.loc && b.loc && a.loc.lexer === b.loc.lexer && a.loc.end === b.loc.start;

// Dashes written together stay one token (--), as the format writes them.
function walkAll(nodes, out) {
  for (let i = 0; i < nodes.length; i++) {
    if (!isDash(nodes[i])) {
      walk(nodes[i], out);
      continue;
    }
    let dashes = "-";
    for (; i + 1 < nodes.length && isDash(nodes[i + 1]) && adjacent(nodes[i], nodes[i + 1]); i++) {
      dashes += "-";
    }
    out.push(dashes);
  }
}

function walkArgument(arg, kind, out) {
  if (kind === "o") {
    out.push("[", ...characters(arg.string), "]");
  } else if (kind === "r") {
    out.push("{", ...characters(arg.string), "}");
  } else if (kind === "t") {
    out.push("{");
    walkText(arg.type === "ordgroup" ? arg.body : [arg], out);
    out.push("}");
  } else if (kind === "w") {
    walk(arg, out); // a {group} prints its own braces
  } else {
    braced(arg, out);
  }
}

// Text: a space is ~, as the format writes it. Text already in the format has a space between
// every two tokens, which are no spaces of the author's: when every run between spaces is one
// token long, the spaces are taken as separators.
function walkText(nodes, out) {
  const isSpace = (node) => node.type === "spacing" && node.text === " ";
  let run = 0;
  let separators = true;
  for (const node of nodes) {
    run = isSpace(node) ? 0 : run + 1;
    if (run > 1) separators = false;
  }
  for (const node of nodes) {
    if (isSpace(node)) {
      if (!separators) out.push("~");
    } else {
      walk(node, out);
    }
  }
}

function walkEnvironment(node, out) {
  out.push(`\\begin{${node.name}}`);
  for (const arg of node.spec) {
    const chars = characters(arg.text);
    out.push(...(arg.optional ? ["[", ...chars, "]"] : ["{", ...chars, "}"]));
  }
  for (const row of node.rows) {
    out.push(...row.hlines);
    if (row.cells === null) continue;
    row.cells.forEach((cell, i) => {
      if (i > 0) out.push("&");
      braced(cell.length === 1 && cell[0].type === "ordgroup" ? cell[0] : cell, out);
    });
    out.push("\\\\");
  }
  out.push(`\\end{${node.name}}`);
}

function walkGenfrac(node, out) {
  const infix = { ".": "\\atop", "\\{": "\\brace", "[": "\\brack" }[node.leftDelim || "."];
  if (!node.hasBarLine && !(node.leftDelim === "(" && node.rightDelim === ")") && infix) {
    walkAll(node.numer.body, out); // \atop keeps its infix form, as the format writes it
    out.push(infix);
    walkAll(node.denom.body, out);
    return;
  }
  out.push(node.hasBarLine ? "\\frac" : "\\binom");
  walk(node.numer, out); // as written: the format has \frac 1 2
  walk(node.denom, out);
}

const WALKERS = {
  ordgroup: (node, out) => {
    const [first] = node.body;
    if (node.body.length === 1 && first.type === "switch" && first.name === "\\rm") {
      walk(first, out); // {\rm sin} -> \mathrm { s i n }: the group becomes the argument
      return;
    }
    if (writtenBraced(node)) out.push("{");
    walkAll(node.body, out);
    if (writtenBraced(node)) out.push("}");
  },
  mathord: (node, out) => out.push(node.text),
  textord: (node, out) => out.push(node.text),
  atom: (node, out) => out.push(node.text),
  spacing: (node, out) => out.push(node.text === "\\ " || node.text === " " ? "\\" : node.text),
  keep: (node, out) => {
    out.push(node.name);
    substacks += node.name === "\\substack";
    node.args.forEach((arg, i) => walkArgument(arg, node.kinds[i], out));
    substacks -= node.name === "\\substack";
  },
  switch: (node, out) => {
    if (node.name === "\\rm") {
      out.push("\\mathrm"); // \rm{max} as \mathrm{max}, \rm max as \mathrm { m a x }
      const [group] = node.body;
      if (node.body.length === 1 && group.type === "ordgroup" && writtenBraced(group)) walk(group, out);
      else braced(node.body, out);
      return;
    }
    out.push(node.name);
    walkAll(node.body, out);
  },
  dropped: () => {},
  supsub: (node, out) => {
    const primes = node.sup && node.sup.type === "ordgroup" ? node.sup.body : [];
    if (!node.base && !node.sub && primes.length && primes.every((n) => n.text === "\\prime")) {
      out.push(...primes.map(() => "'")); // a prime with nothing to stand on stays '
      return;
    }
    if (node.base) walk(node.base, out);
    const script = node.base ? braced : walk; // with nothing to stand on: as written
    if (node.sub) {
      out.push("_");
      script(node.sub, out);
    }
    if (node.sup) {
      out.push("^");
      script(node.sup, out);
    }
  },
  op: (node, out) => {
    if (node.body) {
      out.push("\\mathop");
      braced(node.body, out);
    } else {
      out.push(node.name);
    }
    if (node.alwaysHandleSupSub) out.push(node.limits ? "\\limits" : "\\nolimits");
  },
  operatorname: (node, out) => {
    out.push(node.alwaysHandleSupSub ? "\\operatorname*" : "\\operatorname");
    braced(node.body, out);
  },
  genfrac: walkGenfrac,
  sqrt: (node, out) => {
    out.push("\\sqrt");
    if (node.index) {
      out.push("[");
      walkAll(node.index.type === "ordgroup" ? node.index.body : [node.index], out);
      out.push("]");
    }
    walk(node.body, out);
  },
  accent: (node, out) => {
    out.push(node.label);
    braced(node.base, out);
  },
  accentUnder: (node, out) => {
    out.push(node.label);
    braced(node.base, out);
  },
  horizBrace: (node, out) => {
    out.push(node.label);
    braced(node.base, out);
  },
  overline: (node, out) => {
    out.push("\\overline");
    braced(node.body, out);
  },
  underline: (node, out) => {
    out.push("\\underline");
    braced(node.body, out);
  },
  font: (node, out) => {
    out.push(`\\${node.font}`);
    braced(node.body, out);
  },
  text: (node, out) => {
    out.push(node.font || "\\mathrm");
    out.push("{");
    walkText(node.body, out);
    out.push("}");
  },
  styling: (node, out) => walkAll(node.body, out),
  leftright: (node, out) => {
    out.push(`\\left${node.left}`);
    walkAll(node.body, out);
    out.push(`\\right${node.right}`);
  },
  middle: (node, out) => out.push(`\\middle${node.delim}`),
  delimsizing: (node, out) => {
    out.push(DELIMITER_SIZES[`${node.mclass} ${node.size}`] || "\\big", node.delim);
  },
  env: walkEnvironment,
  // \\ outside an environment: a thin space (im2markup's rule); \substack keeps its lines
  cr: (node, out) => out.push(substacks > 0 ? "\\\\" : "\\,"),
  phantom: (node, out) => {
    out.push("\\phantom");
    braced(node.body, out);
  },
  vphantom: (node, out) => {
    out.push("\\vphantom");
    braced(node.body, out);
  },
  mclass: (node, out) => {
    out.push(`\\math${node.mclass.slice(1)}`);
    braced(node.body, out);
  },
  xArrow: (node, out) => {
    out.push(node.label);
    if (node.below) {
      out.push("[");
      walkAll(node.below.type === "ordgroup" ? node.below.body : [node.below], out);
      out.push("]");
    }
    braced(node.body, out);
  },
  color: (node, out) => walkAll(node.body, out), // colour is not part of the format
  htmlmathml: (node, out) => walkAll(node.html, out),
  internal: () => {},
};

function walk(node, out) {
  const walker = WALKERS[node.type];
  if (!walker) throw new Unsupported(`${node.type} (${node.label || node.name || ""}) has no token form`);
  walker(node, out);
}

// --- the text before parsing --------------------------------------------------------------------

// What the format removes before parsing (im2markup's rules): a % comment, $, and the \~ and
// \> that KaTeX would take for accents or spacing; escaped characters (\%, \$) stay.
function clean(line) {
  let out = "";
  if (/(^|[^\\])(\\\\)*\\\s*$/.test(line)) line = line.trimEnd() + " "; // ends in a control space
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "%") break;
    if (c === "$") {
      out += " ";
    } else if (c === "\\" && i + 1 < line.length) {
      const next = line[i + 1];
      if (next === "~" || next === ">") out += " ";
      else out += c + next;
      i++;
    } else {
      out += c;
    }
  }
  return out;
}

function normalize(line) {
  substacks = 0;
  const tree = katex.__parse(clean(line), KATEX_OPTIONS);
  const out = [];
  walkAll(tree, out);
  return out.join(" ");
}

function answer(line) {
  try {
    return { tokens: normalize(JSON.parse(line)) };
  } catch (error) {
    if (error instanceof katex.ParseError || error instanceof Unsupported) {
      const where = error.position === undefined ? "" : ` (at character ${error.position + 1})`;
      return { error: `${error.rawMessage || error.message}${where}` };
    }
    return { error: `the walker failed: ${error.message}`, internal: true }; // a bug, counted
  }
}

defineKept();
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const buffered = [];
lines.on("line", (line) => {
  buffered.push(JSON.stringify(answer(line)));
  if (buffered.length >= 256) process.stdout.write(buffered.splice(0).join("\n") + "\n");
});
lines.on("close", () => {
  if (buffered.length) process.stdout.write(buffered.join("\n") + "\n");
});
