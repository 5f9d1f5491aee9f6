"""Decide whether an untrusted, normalized LaTeX formula may be handed to TeX.

The render stage pastes every formula into one batched document, one formula per line::

    \\begin{displaymath} FORMULA \\end{displaymath}\\clearpage\\typeout{...marker...}

so a formula can hurt in three ways.  It can *do* something: read or write files, run
commands, redefine macros, change catcodes, end the document.  It can *swallow* its
neighbours: an unclosed ``{``, ``\\begin``, ``\\left`` or ``[`` argument makes TeX read the
following formulas as part of this one.  And it can *stop the batch*: endless loops in TeX's
alignment code, exponential work from nested ``\\mathchoice`` commands, more than 255
grouping levels, or 100 errors in one formula all end the run.  TeX itself runs without
shell escape and with paranoid ``openin_any``/``openout_any``; this module is the first line
of defence.  Every structural rule below was found by rendering batches with latex (and
dvipng, whose limits are tighter than TeX's).

The checks look at the formula the way TeX will, not the way the space-separated tokens
suggest: every space-separated token is split into TeX tokens (``a\\input`` is ``a`` then
``\\input``; ``\\left\\{`` is ``\\left`` then ``\\{``; ``\\begin{array}`` is ``\\begin``, ``{``,
``a``, ... ``}``).  In order, :func:`check_formula` refuses

* characters: non-ASCII, control characters, ``^^`` (TeX's hex escape), bare ``% # $``;
* vocabulary: control sequences outside ALLOWED_CONTROL_SEQUENCES (DANGEROUS_CONTROL_SEQUENCES
  only improves the message), digits joined to other characters (TeX would read big numbers
  and lengths), a repeated ``\\unitlength``;
* structure: unbalanced braces, unmatched or disallowed environments, ``\\left``/``\\right``
  not paired in the same group and cell, nesting deeper than MAX_NESTING;
* arguments: missing or unterminated arguments (see ``_ARGUMENTS``), ``\\hline`` away from the
  start of a row, math in text mode, commands that copy their argument nested too deeply;
* boxes: constructs nested deeper than dvipng can draw, each charged what it costs
  (``BOX_COST``, ``MAX_BOX_DEPTH``): TeX would typeset the page, and dvipng give up on it.

Token positions in the reasons are 1-based indices into :func:`tokenize`'s list.  Callers
should render ``normalize(formula)``, the exact text that was checked, with a space on both
sides (a formula may end in the control space ``\\``).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import compress

from pipeline.contracts import normalize_formula

DEFAULT_MAX_CHARS = 4000


def _names(text: str) -> frozenset[str]:
    """Turn a whitespace-separated block of control sequences into a frozenset."""
    return frozenset(text.split())


# --- allow-list ------------------------------------------------------------------------------

_GREEK = r"""
\alpha \beta \gamma \delta \epsilon \varepsilon \zeta \eta \theta \vartheta \iota \kappa
\varkappa \lambda \mu \nu \xi \pi \varpi \rho \varrho \sigma \varsigma \tau \upsilon \phi
\varphi \chi \psi \omega \digamma
\Gamma \Delta \Theta \Lambda \Xi \Pi \Sigma \Upsilon \Phi \Psi \Omega
\varGamma \varDelta \varTheta \varLambda \varXi \varPi \varSigma \varUpsilon \varPhi \varPsi
\varOmega \aleph \beth \gimel \daleth
"""

_BINARY_OPERATORS = r"""
\pm \mp \times \div \cdot \ast \star \circ \bullet \oplus \ominus \otimes \oslash \odot
\bigcirc \cap \cup \uplus \sqcap \sqcup \vee \wedge \setminus \smallsetminus \wr \diamond
\bigtriangleup \bigtriangledown \triangleleft \triangleright \dagger \ddagger \amalg \land \lor
\dotplus \centerdot \ltimes \rtimes \leftthreetimes \rightthreetimes \curlywedge \curlyvee
\circleddash \circledast \circledcirc \boxminus \boxtimes \boxdot \boxplus \divideontimes
\barwedge \veebar \doublebarwedge \Cap \Cup \intercal \lhd \rhd \unlhd \unrhd
"""

_RELATIONS = r"""
\leq \le \geq \ge \neq \ne \equiv \sim \simeq \approx \cong \asymp \propto \prec \succ \preceq
\succeq \ll \gg \subset \supset \subseteq \supseteq \sqsubset \sqsupset \sqsubseteq \sqsupseteq
\in \ni \notin \owns \vdash \dashv \models \perp \mid \parallel \smile \frown \bowtie \doteq
\Join \leqq \geqq \leqslant \geqslant \eqslantless \eqslantgtr \lesssim \gtrsim \lessapprox
\gtrapprox \approxeq \lessdot \gtrdot \lll \ggg \lessgtr \gtrless \lesseqgtr \gtreqless
\lesseqqgtr \gtreqqless \doteqdot \Doteq \risingdotseq \fallingdotseq \backsim \backsimeq
\subseteqq \supseteqq \Subset \Supset \preccurlyeq \succcurlyeq \curlyeqprec \curlyeqsucc
\precsim \succsim \precapprox \succapprox \vartriangleleft \vartriangleright \trianglelefteq
\trianglerighteq \vDash \Vdash \Vvdash \smallsmile \smallfrown \bumpeq \Bumpeq \varpropto
\between \pitchfork \shortmid \shortparallel \thicksim \thickapprox \eqcirc \circeq \triangleq
\blacktriangleleft \blacktriangleright \backepsilon \therefore \because
\nless \ngtr \nleq \ngeq \nleqslant \ngeqslant \nleqq \ngeqq \lneq \gneq \lneqq \gneqq
\lvertneqq \gvertneqq \lnsim \gnsim \lnapprox \gnapprox \nprec \nsucc \npreceq \nsucceq
\precneqq \succneqq \precnsim \succnsim \precnapprox \succnapprox \nsim \ncong \nshortmid
\nshortparallel \nmid \nparallel \nvdash \nvDash \nVdash \nVDash \ntriangleleft
\ntriangleright \ntrianglelefteq \ntrianglerighteq \nsubseteq \nsupseteq \nsubseteqq
\nsupseteqq \subsetneq \supsetneq \varsubsetneq \varsupsetneq \subsetneqq \supsetneqq
\varsubsetneqq \varsupsetneqq
"""

_ARROWS = r"""
\leftarrow \gets \rightarrow \to \Leftarrow \Rightarrow \leftrightarrow \Leftrightarrow
\longleftarrow \longrightarrow \Longleftarrow \Longrightarrow \longleftrightarrow
\Longleftrightarrow \mapsto \longmapsto \hookleftarrow \hookrightarrow \leftharpoonup
\leftharpoondown \rightharpoonup \rightharpoondown \rightleftharpoons \leftrightharpoons
\uparrow \downarrow \updownarrow \Uparrow \Downarrow \Updownarrow \nearrow \searrow \swarrow
\nwarrow \iff \implies \impliedby \leadsto \dashrightarrow \dashleftarrow \leftleftarrows
\rightrightarrows \leftrightarrows \rightleftarrows \Lleftarrow \Rrightarrow
\twoheadleftarrow \twoheadrightarrow \leftarrowtail \rightarrowtail \looparrowleft
\looparrowright \circlearrowleft \circlearrowright \curvearrowleft \curvearrowright \Lsh \Rsh
\upuparrows \downdownarrows \upharpoonleft \upharpoonright \downharpoonleft \downharpoonright
\restriction \multimap \rightsquigarrow \leftrightsquigarrow \nleftarrow \nrightarrow
\nLeftarrow \nRightarrow \nleftrightarrow \nLeftrightarrow \xrightarrow \xleftarrow
"""

_BIG_OPERATORS = r"""
\sum \prod \coprod \int \oint \iint \iiint \iiiint \idotsint \smallint \bigcap \bigcup
\bigsqcup \bigvee \bigwedge \bigodot \bigoplus \bigotimes \biguplus
"""

_SYMBOLS = r"""
\infty \nabla \partial \forall \exists \nexists \emptyset \varnothing \hbar \hslash \ell \wp
\Re \Im \imath \jmath \prime \backprime \angle \measuredangle \sphericalangle \triangle
\triangledown \blacktriangle \blacktriangledown \square \blacksquare \lozenge \blacklozenge
\bigstar \diamondsuit \heartsuit \spadesuit \clubsuit \flat \natural \sharp \top \bot \surd
\neg \lnot \checkmark \complement \eth \mho \Finv \Game \Bbbk \circledS \diagup \diagdown
\Diamond \Box \cdotp \ldotp \colon \vdots \ddots \cdots \ldots \dots \dotsb \dotsc \dotsi
\dotsm \dotso \dag \ddag \S \P \pounds \copyright \AA \aa \AE \ae \OE \oe \O \o \L \l \ss
\i \j \backslash \slash
"""

_DELIMITERS = r"""
\langle \rangle \lbrace \rbrace \lbrack \rbrack \lfloor \rfloor \lceil \rceil \vert \Vert
\lvert \rvert \lVert \rVert \ulcorner \urcorner \llcorner \lrcorner \lgroup \rgroup
\lmoustache \rmoustache \arrowvert \Arrowvert \bracevert \{ \} \|
\left \right \middle \big \Big \bigg \Bigg \bigl \bigr \bigm \Bigl \Bigr \Bigm \biggl \biggr
\biggm \Biggl \Biggr \Biggm
"""

_ACCENTS = r"""
\hat \widehat \check \tilde \widetilde \acute \grave \dot \ddot \dddot \ddddot \breve \bar
\vec \mathring \overline \underline \overbrace \underbrace \overrightarrow \overleftarrow
\overleftrightarrow \underrightarrow \underleftarrow \underleftrightarrow
"""

_TEXT_ACCENTS = r"""
\' \` \" \^ \~ \= \. \b \c \d \H \t \u \v \r
"""

_FONTS = r"""
\mathrm \mathbf \mathcal \mathit \mathsf \mathtt \mathbb \mathfrak \mathnormal \boldsymbol
\pmb \bf \it \rm \cal \sf \tt \sl \sc \mit \em \bfseries \itshape \rmfamily \sffamily
\ttfamily \upshape \slshape \scshape \mdseries \normalfont \boldmath \unboldmath \textrm
\textbf \textit \textsf \texttt \textsl \textsc \textup \textnormal \textmd \text \mbox \emph
"""

_SIZES = r"""
\displaystyle \textstyle \scriptstyle \scriptscriptstyle \tiny \scriptsize \footnotesize
\small \normalsize \large \Large \LARGE \huge \Huge
"""

_SPACING = r"""
\, \; \: \! \> \/ \- \* \quad \qquad \hspace \vspace \hfill \hfil \hss \enspace \enskip
\thinspace \negthinspace \medspace \negmedspace \thickspace \negthickspace \kern \mkern \hskip
\mskip \phantom \hphantom \vphantom \smash \mathstrut \strut \smallskip \medskip \bigskip
\nobreak \allowbreak
"""

_STRUCTURE = r"""
\frac \dfrac \tfrac \cfrac \binom \dbinom \tbinom \sqrt \stackrel \overset \underset
\atop \over \choose \brace \brack \operatorname \substack \buildrel \boxed
\fbox \mbox \makebox \raisebox \rule \rlap \llap \lefteqn \mathrel \mathbin \mathord \mathop
\mathopen \mathclose \mathpunct \mathinner \limits \nolimits \displaylimits \not \label
\nonumber \notag \hline \cline \vline \multicolumn \ensuremath \mod \bmod \pmod
\pod \sb \sp \protect \relax \raise \lower \begin \end \\ \& \_ \# \% \$
"""

_FUNCTION_NAMES = r"""
\sin \cos \tan \cot \sec \csc \arcsin \arccos \arctan \sinh \cosh \tanh \coth \exp \log \ln
\lg \lim \liminf \limsup \sup \inf \max \min \arg \det \dim \gcd \hom \ker \deg \Pr \injlim
\projlim \varinjlim \varprojlim \varliminf \varlimsup
"""

_PICTURE = r"""
\put \circle \line \vector \oval \unitlength \setlength \thicklines \thinlines \linethickness
"""

#: Every control sequence a formula may contain.  ``"\\ "`` (backslash, space) is the control
#: space, the im2latex token ``\`` followed by a space.  ``\operatorname*`` is covered by
#: ``\operatorname`` (TeX reads the ``*`` as a separate token); ``\write18`` is ``\write``.
ALLOWED_CONTROL_SEQUENCES: frozenset[str] = _names(
    _GREEK
    + _BINARY_OPERATORS
    + _RELATIONS
    + _ARROWS
    + _BIG_OPERATORS
    + _SYMBOLS
    + _DELIMITERS
    + _ACCENTS
    + _TEXT_ACCENTS
    + _FONTS
    + _SIZES
    + _SPACING
    + _STRUCTURE
    + _FUNCTION_NAMES
    + _PICTURE
) | {"\\ "}

#: Environments a formula may open.  Everything else (document, verbatim, ...) is refused.
ALLOWED_ENVIRONMENTS: frozenset[str] = _names(
    """array matrix pmatrix bmatrix Bmatrix vmatrix Vmatrix smallmatrix cases aligned alignedat
    gathered split subarray picture"""
)

# --- known-dangerous names: refused anyway, listed so the reason can say why -----------------


def _tag(why: str, text: str) -> dict[str, str]:
    """Map each control sequence in ``text`` to the explanation ``why``."""
    return dict.fromkeys(text.split(), why)


#: Control sequences known to be harmful, mapped to why.  Not needed for safety (anything
#: outside the allow-list is refused) but it makes the refusal reason self-explanatory.
DANGEROUS_CONTROL_SEQUENCES: dict[str, str] = {
    **_tag(
        "can read/write files or run commands",
        r"""\input \include \includeonly \InputIfFileExists \IfFileExists \openin \openout
        \closein \closeout \read \readline \write \immediate \special \endinput \includegraphics
        \verbatiminput \lstinputlisting \pdfobj \pdffilesize \pdffiledump \pdfmdfivesum
        \directlua \latelua \luaexec \ShellEscape \pdfshellescape \openxmlfile""",
    ),
    **_tag(
        "can define or redefine commands",
        r"""\def \edef \gdef \xdef \let \futurelet \newcommand \renewcommand \providecommand
        \DeclareRobustCommand \newenvironment \renewenvironment \DeclareMathOperator \newcount
        \newdimen \newtoks \newlength \newif \chardef \mathchardef \countdef \dimendef \toksdef
        \global \long \outer \protected""",
    ),
    **_tag(
        "can change how TeX reads or expands the input",
        r"""\csname \endcsname \expandafter \noexpand \string \meaning \jobname \scantokens
        \detokenize \unexpanded \romannumeral \number \the \lowercase \uppercase
        \afterassignment \aftergroup \catcode \lccode \uccode \mathcode \sfcode \delcode
        \endlinechar \escapechar \newlinechar \makeatletter \makeatother \pdfprimitive
        \primitive \begingroup \endgroup \bgroup \egroup \iffalse \iftrue \ifx \ifnum \if \fi
        \else \or \loop \repeat \@""",
    ),
    **_tag(
        "would break the batched document or its log markers",
        r"""\documentclass \usepackage \RequirePackage \clearpage \cleardoublepage \newpage
        \pagebreak \shipout \output \everypar \everymath \everydisplay \everyhbox \everyvbox
        \everyjob \everycr \everyeof \stop \bye \dump \batchmode \nonstopmode \scrollmode
        \errorstopmode \typeout \message \errmessage \errhelp \show \showbox \showlists
        \showthe \footnote \marginpar \eject \par \[ \] \( \)""",
    ),
    **_tag("reads raw characters, bypassing these checks", r"\verb \url \lstinline"),
}

#: Environments known to be harmful, mapped to why.
DANGEROUS_ENVIRONMENTS: dict[str, str] = {
    "document": "would end or restart the batched document",
    "verbatim": "reads raw characters, bypassing these checks",
    "verbatim*": "reads raw characters, bypassing these checks",
    "comment": "reads raw characters, bypassing these checks",
    "lstlisting": "reads raw characters, bypassing these checks",
    "minted": "reads raw characters, bypassing these checks",
    "filecontents": "writes files",
    "filecontents*": "writes files",
    "tabular": "its cells are text mode, where one math command makes TeX give up the batch",
}

_FORBIDDEN_CHARACTERS = {
    "%": "starts a TeX comment that hides the rest of the line",
    "#": "is a macro parameter character",
    "$": "switches math mode",
}

#: Printable ASCII other than the backslash (forbidden ones are taken out later).
_PLAIN_CHARACTERS = frozenset(chr(code) for code in range(0x21, 0x7F)) - {"\\"}

# --- argument shapes -------------------------------------------------------------------------
# One letter per argument a command reads:
#   m  mandatory: one token or a {group}        b  mandatory {group}
#   t  like m, typeset in text mode             T  like b, in text mode
#   p  like m, in picture mode
#   r  {n-m} column range (\cline)               k  {column spec} of l c r | only
#   s  optional *                                o  optional [..] that must be closed
#   a  optional [t], [b] or [c]                  n  no [ may follow (\\)
#   c  optional (x,y) picture coordinates        C  mandatory (x,y)
#   d  a delimiter (\big ...)                   N  {n}, one digit
#                            v  text up to a \over in the same group
# Each rule was found by rendering batches with latex: an unterminated [ or (, a coordinate
# pair without its comma, an unbraced \label and a \cline without n-m make TeX read on
# through every following formula of the batch; a missing mandatory argument makes a command
# take \end{displaymath}; \\ followed by a malformed [length] inside an array, \hline away from
# the start of a row, or an array without a proper column spec sends TeX into an endless loop.
# Text mode multiplies errors (each math command there costs 4 to 10 of them, one \frac in a
# tabular cell 100) and 100 errors in one formula make TeX abandon the whole batch, so text
# arguments and the picture body may hold only _TEXT_SAFE tokens, and \multicolumn (about 20
# errors when misplaced) must start a cell.


def _shape(spec: str, text: str) -> dict[str, str]:
    """Give every command in ``text`` the argument shape ``spec``."""
    return dict.fromkeys(text.split(), spec)


_ARGUMENTS: dict[str, str] = {
    **_shape("m", "^ _ \\sb \\sp"),
    **_shape("m", _ACCENTS),
    **_shape("t", _TEXT_ACCENTS),  # on a math symbol they cascade into dozens of errors
    **_shape(
        "t",
        r"""\textrm \textbf \textit \textsf \texttt \textsl \textsc \textup \textnormal \textmd
        \text \mbox \emph \fbox \rlap \llap""",
    ),
    **_shape(
        "m",
        r"""\mathrm \mathbf \mathcal \mathit \mathsf \mathtt \mathbb \mathfrak \mathnormal
        \boldsymbol \pmb \boxed \lefteqn \mathrel
        \mathbin \mathord \mathop \mathopen \mathclose \mathpunct \mathinner \phantom
        \hphantom \vphantom \substack \ensuremath \mod \pmod \pod""",
    ),
    **_shape(
        "d",
        r"""\big \Big \bigg \Bigg \bigl \bigr \bigm \Bigl \Bigr \Bigm \biggl \biggr \biggm \Biggl
        \Biggr \Biggm""",
    ),
    **_shape("b", r"\linethickness"),
    **_shape("mm", r"\frac \dfrac \tfrac \binom \dbinom \tbinom \stackrel \overset \underset"),
    **_shape("bb", r"\setlength"),
    **_shape("T", r"\label"),
    **_shape("r", r"\cline"),
    **_shape("", r"\hline"),
    **_shape("omm", r"\cfrac"),
    **_shape("obb", r"\rule"),
    **_shape("om", r"\sqrt \smash \xrightarrow \xleftarrow"),
    **_shape("sm", r"\operatorname \circle"),
    **_shape("sb", r"\hspace \vspace"),
    **_shape("sn", "\\\\"),
    **_shape("mkm", r"\multicolumn"),
    **_shape("coot", r"\makebox"),
    **_shape("boot", r"\raisebox"),
    **_shape("Cp", r"\put"),
    **_shape("Cm", r"\line \vector"),
    **_shape("Co", r"\oval"),
    **_shape("v", r"\buildrel"),
}

_ENVIRONMENT_ARGUMENTS: dict[str, str] = {
    "array": "ak",
    "subarray": "k",
    "alignedat": "aN",
    "aligned": "a",
    "gathered": "a",
    "picture": "Cc",
}

#: Environments whose cells & separates and whose rows \\ ends.
_ALIGNMENTS = ALLOWED_ENVIRONMENTS - {"picture"}

#: Alignments whose rows \hline and \cline may separate (in aligned, gathered and alignedat
#: an \hline after the [t] argument costs 13 to 17 errors).
_RULED = _ALIGNMENTS - {"aligned", "alignedat", "gathered", "split"}

#: Control sequences that typeset without errors in text mode (found by rendering each one
#: inside \mbox and \text), plus the length commands.  ^ _ & are math/alignment only.
_TEXT_SAFE = (
    _names(
        r"""\! \" \# \$ \% \& \' \* \, \- \. \/ \: \; \= \> \AA \AE \H \Huge \L \LARGE \Large
    \O \OE \P \S \\ \^ \_ \` \aa \ae \allowbreak \b \bf \bfseries \bigskip \boldmath \c \cal
    \checkmark \copyright \d \dag \ddag \dots \dotso \em \emph \enskip \enspace \fbox
    \footnotesize \hfil \hfill \hphantom \hss \huge \i \it \itshape \j \l \large \lbrack
    \ldots \llap \makebox \mathstrut \mbox \mdseries \medskip \medspace \mit \negmedspace
    \negthickspace \negthinspace \nobreak \normalfont \normalsize \o \oe \phantom \pmb
    \pounds \protect \qquad \quad \r \rbrack \relax \rlap \rm \rmfamily \sc \scriptsize
    \scshape \sf \sffamily \sl \slash \slshape \small \smallskip \smash \ss \strut \t \text
    \textbf \textit \textmd \textnormal \textrm \textsc \textsf \textsl \texttt \textup
    \thickspace \thinspace \tiny \tt \ttfamily \u \unboldmath \underline \upshape \v \vphantom
    \{ \} \~ \hspace \vspace \rule \raisebox \kern \hskip \vdots \label \nonumber \notag"""
    )
    | (_PLAIN_CHARACTERS - {"^", "_", "&"})
    | {"\\ "}
)

#: What a picture body may hold: text without \\, plus the picture commands.
_PICTURE_SAFE = (_TEXT_SAFE - {"\\\\"}) | _names(
    r"""\put \line \vector \circle \oval \thicklines \thinlines \linethickness \unitlength
    \setlength"""
)

#: Text accents built on TeX's \accent, which math mode refuses with an error every time
#: ("Please use \mathaccent"); \b and \d build their own boxes and work in math.
_TEXT_ONLY_ACCENTS = _names(_TEXT_ACCENTS) - {"\\b", "\\d"}

#: Argument kinds typeset in text or picture mode, and the tokens they may hold.
_TEXT_KINDS = {"t": _TEXT_SAFE, "T": _TEXT_SAFE, "p": _PICTURE_SAFE}

_LEFT_RIGHT_DELIMITERS = _names(
    r"""( ) [ ] | / . < > \{ \} \| \langle \rangle \vert \Vert \lvert \rvert \lVert \rVert
    \lbrack \rbrack \lbrace \rbrace \lfloor \rfloor \lceil \rceil \uparrow \downarrow \updownarrow
    \Uparrow \Downarrow \Updownarrow \backslash \ulcorner \urcorner \llcorner \lrcorner
    \lgroup \rgroup \lmoustache \rmoustache \arrowvert \Arrowvert \bracevert"""
)

#: Tokens that cannot be a mandatory argument: TeX would take them as the argument and lose
#: track of the group, cell, environment or \left pair they belong to.
_NOT_AN_ARGUMENT = _names(
    r"} & \\ \begin \end \left \middle \right \over \atop \choose \brace \brack \hline \cline"
)

#: Primitives that read a math field and expand what follows: ``x _ \mathrm { m a x }``
#: works, and any other command costs them at most two errors.  Macros (everything else)
#: take an unbraced command as their whole argument, cutting it off from its own arguments:
#: ``\hat \frac 1 2`` costs 12 errors, ``\fbox \H x`` more.
_SCANS_MATH_FIELD = _names(
    r"""^ _ \sb \sp \mathrel \mathbin \mathord \mathop \mathopen \mathclose \mathpunct
    \mathinner"""
)

#: Commands that typeset their argument once per math style (\mathchoice, \mathpalette), so
#: nesting them costs 4 (\pmb: about 12) times per level: \pmb nested 6 deep takes 14 s, 8
#: deep never ends.  \sqrt copies only with a [root].  Real formulas never nest two of them.
_STYLE_COPYING = _names(
    r"""\pmb \boldsymbol \phantom \hphantom \vphantom \smash \overset \underset \xrightarrow
    \xleftarrow \overrightarrow \overleftarrow \overleftrightarrow \underrightarrow
    \underleftarrow \underleftrightarrow \sqrt"""
)

#: Commands that typeset their argument twice (to measure it, then to place the accent):
#: \widehat nested 20 deep takes 1.6 s, 22 deep 6 s; a text accent in math 20 deep, 8.6 s.
_DOUBLING = _names(r"\widehat \widetilde" + _TEXT_ACCENTS)

#: How many doublings nesting may add up to: a style-copying command counts two (4 copies),
#: a doubling one.  Three style-copying commands, or six doubling ones, take well under 1 s.
MAX_COPY_DOUBLINGS = 6

#: Deepest nesting of { }, \begin/\end and \left/\right accepted.  Real formulas reach 8;
#: TeX stops the whole batch beyond 255 grouping levels and a level here can cost about 5.
MAX_NESTING = 32

#: DVI stack levels that one nesting level of a construct costs, for those costing more than
#: one or adding to the box around them (measured by benchmarks/box_depth.py, which checks
#: this table against latex).  dvipng stops with "DVI stack overflow" on a page nested past
#: 99 levels, though TeX writes it happily: ``\fbox`` nested 17 deep did, and every later
#: page of its batch went with it.  Everything else costs at most one level and needs a group
#: of its own, which MAX_NESTING bounds, so a page nests at most MAX_BOX_DEPTH + MAX_NESTING
#: + 3 (the page's own) levels, with room for constructs costing a level more in some context.
BOX_COST: dict[str, int] = {
    **dict.fromkeys(_names(r"\sqrt \smash \boldsymbol \stackrel \raisebox \limits"), 2),
    **dict.fromkeys(
        _names(
            r"""\frac \binom \overset \underset \substack \pmb \xrightarrow \xleftarrow \b \d
            \overrightarrow \overleftarrow \overleftrightarrow \underrightarrow \underleftarrow
            \underleftrightarrow \dddot \ddddot \buildrel \over \atop \choose \brace \brack
            array subarray matrix smallmatrix gathered"""
        ),
        3,
    ),
    **dict.fromkeys(
        _names(
            r"""\dfrac \tfrac \dbinom \tbinom pmatrix bmatrix Bmatrix vmatrix Vmatrix
            cases aligned alignedat split picture"""
        ),
        4,
    ),
    **dict.fromkeys(_names(r"\cfrac \overbrace \underbrace"), 5),
    **dict.fromkeys(_names(r"\fbox \boxed"), 6),
    **dict.fromkeys(_names(r"\hline \cline"), 1),  # on top of their array's
}
MAX_BOX_DEPTH = 60

#: 'm' commands the argument pass cannot skip: they copy styles or box deeply.
_SLOW_M = _STYLE_COPYING | _DOUBLING | BOX_COST.keys()

#: Fractions written between their parts: they box the whole group around them.
INFIX_FRACTIONS = (r"\over", r"\atop", r"\choose", r"\brace", r"\brack")

#: Costly tokens whose boxes hold the whole group (or environment) around them.
_GROUP_WIDE = frozenset(INFIX_FRACTIONS) | {r"\limits", r"\hline", r"\cline"}


# --- tokens ----------------------------------------------------------------------------------

#: A TeX token as TeX reads the document body: a control word (letters only, so ``\@`` and
#: ``\frac12`` split the way TeX splits them), a control symbol (``\{``, ``\\``, and ``\ ``, the
#: control space), or one non-blank character.
_TEX_TOKEN = re.compile(r"\\[A-Za-z]+|\\[^A-Za-z]|\S")
_OUTSIDE_PRINTABLE_ASCII = re.compile(r"[^ -~]")
_JOINED_DIGIT = re.compile(r"\S\d|\d\S")
_COLUMN_RANGE = re.compile(r"[0-9]+-[0-9]+")
_SURROUNDING_WHITESPACE = " \t\r\n"
_ALLOWED_TEX_TOKENS = (ALLOWED_CONTROL_SEQUENCES | _PLAIN_CHARACTERS) - _FORBIDDEN_CHARACTERS.keys()
_STRUCTURAL = _names(r"{ } \begin \end \left \right \middle & \\")
_NESTING_STEP = {"{": 1, "\\begin": 1, "\\left": 1, "}": -1, "\\end": -1, "\\right": -1}
_TAKES_ARGUMENTS = frozenset(_ARGUMENTS) | {"\\begin"}
_NEEDS_ARGUMENTS = frozenset(name for name, spec in _ARGUMENTS.items() if set(spec) - set("soacn"))
_COLUMN_TYPES = frozenset("lcr|")
_POSITIONS = frozenset("tbc")


def _positions(pieces: list[str], wanted: frozenset[str]) -> list[int]:
    """Indices of the pieces in ``wanted``, filtered at C speed (formulas are mostly letters)."""
    return list(compress(range(len(pieces)), map(wanted.__contains__, pieces)))


def tokenize(formula: str) -> list[str]:
    """Split a normalized formula into its space-separated tokens (runs of blanks collapse)."""
    return formula.split()


# The single-spaced form of a formula: what was checked, so what to render.
normalize = normalize_formula


class _Formula:
    """A formula as TeX tokens, plus what the passes learn about it.

    Space-token numbers for reasons are worked out only when a reason is needed.
    """

    __slots__ = (
        "text",
        "pieces",
        "matches",
        "row_breaks",
        "cell_breaks",
        "strays",
        "boxes",
        "_where",
    )

    def __init__(self, text: str) -> None:
        self.text = text + " "  # so a trailing \ lexes as the control space it is
        self.pieces: list[str] = _TEX_TOKEN.findall(self.text)
        self.matches: dict[int, int] = {}  # each { or \begin -> its } or \end
        self.row_breaks: set[int] = set()  # indices of the \\ that end a row of a _RULED one
        self.cell_breaks: set[int] = set()  # indices of the & that end an alignment cell
        self.strays: list[int] = []  # indices of the & and \\ outside any alignment
        self.boxes: list[tuple[int, int, int]] = []  # (start, end, BOX_COST) of costly boxes
        self._where: list[int] | None = None

    def at(self, i: int) -> int:
        """Number of the space-separated token that holds TeX token ``i``."""
        if self._where is None:
            spaces = [k for k, char in enumerate(self.text) if char == " "]
            starts = (match.start() for match in _TEX_TOKEN.finditer(self.text))
            self._where = [bisect_left(spaces, start) + 1 for start in starts]
        return self._where[i]

    def name(self, i: int) -> str:
        """``pieces[i]`` for a reason, with the environment name after a \\begin."""
        found = _environment_name(self.pieces, i) if self.pieces[i] == "\\begin" else None
        return f"\\begin{{{found[0]}}}" if found else self.pieces[i]

    def refuse(self, i: int, what: str) -> str:
        """A reason about TeX token ``i``: its name, where it is, and ``what`` is wrong."""
        return f"{self.name(i)} at token {self.at(i)} {what}"


# --- characters and vocabulary ---------------------------------------------------------------


def _character_problem(formula: str, max_chars: int) -> str | None:
    """Refuse what must never reach TeX's input reader: huge, empty, non-ASCII, ^^ escapes."""
    if len(formula) > max_chars:
        return f"formula has {len(formula)} characters, above the limit of {max_chars}"
    text = formula.strip(_SURROUNDING_WHITESPACE)
    if not text:
        return "empty formula"
    bad = None if text.isascii() and text.isprintable() else _OUTSIDE_PRINTABLE_ASCII.search(text)
    if bad:
        code = ord(bad.group())
        if code < 0x20 or code == 0x7F:
            return f"control character '\\x{code:02x}' is not allowed"
        escape = f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
        return f"non-ASCII character '{escape}' is not allowed"
    if "^^" in text:
        return "TeX hex escape ^^ is not allowed"
    return None


def _joined_digit_problem(text: str) -> str | None:
    """Digits must be tokens of their own, as im2latex normalization writes them.

    TeX then never reads a number above 9 nor a length unit, which bounds every \\hspace,
    \\rule, \\kern, \\put or \\multicolumn, so no formula can ask for a huge image.
    """
    joined = _JOINED_DIGIT.search(text)
    if not joined:
        return None
    number = text.count(" ", 0, joined.start()) + 1
    token = text.split(" ")[number - 1]
    return f"token {number} '{token}' joins a digit to other characters (write digits apart)"


def _refusal(piece: str) -> str:
    """Reason for a TeX token outside the allow-list, with why when it is known."""
    if piece[0] != "\\":
        return f"character '{piece}' is not allowed ({_FORBIDDEN_CHARACTERS[piece]})"
    why = DANGEROUS_CONTROL_SEQUENCES.get(piece, "not in the allow-list")
    return f"control sequence {piece.rstrip()} is not allowed ({why})"


def _vocabulary_problem(formula: _Formula) -> str | None:
    """Refuse the first TeX token outside the allow-list (a set difference keeps this fast)."""
    vocabulary = set(formula.pieces)
    unknown = vocabulary.difference(_ALLOWED_TEX_TOKENS)
    if unknown:
        return _refusal(next(piece for piece in formula.pieces if piece in unknown))
    if "\\unitlength" in vocabulary and formula.pieces.count("\\unitlength") > 1:
        return "\\unitlength may appear only once (scaling it repeatedly makes huge pictures)"
    return None


# --- structure: braces, environments, \left/\right -------------------------------------------


def _environment_name(pieces: list[str], i: int) -> tuple[str, int] | None:
    """Read ``{name}`` after the \\begin or \\end at ``i``: the name and the index after it."""
    if i + 1 >= len(pieces) or pieces[i + 1] != "{":
        return None
    name = []
    for j in range(i + 2, min(len(pieces), i + 40)):
        piece = pieces[j]
        if piece == "}":
            return ("".join(name), j + 1) if name else None
        if not (piece.isalpha() or piece == "*"):
            return None
        name.append(piece)
    return None


def _environment(formula: _Formula, i: int) -> str | tuple[str, int]:
    """The allowed environment named after the \\begin/\\end at ``i``, or a refusal."""
    found = _environment_name(formula.pieces, i)
    if found is None:
        return formula.refuse(i, "must be followed by {environment name}")
    name = found[0]
    if name not in ALLOWED_ENVIRONMENTS:
        why = DANGEROUS_ENVIRONMENTS.get(name, "not in the allow-list")
        return f"environment {name} is not allowed ({why})"
    return found


class _Frame:
    """An open group: a brace, an environment, or the formula itself (kind "")."""

    __slots__ = ("kind", "start", "lefts")

    def __init__(self, kind: str, start: int) -> None:
        self.kind = kind
        self.start = start  # TeX-token index of the opener
        self.lefts: list[int] = []  # TeX-token indices of the \left still open in this group


def _describe(formula: _Formula, frame: _Frame) -> str:
    """How a frame's opener reads in a reason."""
    opener = "{" if frame.kind == "{" else f"\\begin{{{frame.kind}}}"
    return f"{opener} at token {formula.at(frame.start)}"


def _mismatch(formula: _Formula, stack: list[_Frame], kind: str, i: int) -> str:
    """Explain a ``}`` or ``\\end`` at ``i`` that does not close the innermost open group."""
    top = stack[-1]
    if kind == "{":
        closer = f"}} at token {formula.at(i)}"
        if not any(frame.kind == "{" for frame in stack):
            return f"unbalanced braces: {closer} closes nothing"
        return f"{closer} comes before the \\end of {_describe(formula, top)}"
    closer = f"\\end{{{kind}}} at token {formula.at(i)}"
    if top.kind == "{":
        return f"unbalanced braces: {_describe(formula, top)} is still open at {closer}"
    if not top.kind:
        return f"{closer} has no matching \\begin"
    return f"{closer} does not match {_describe(formula, top)}"


def _close(formula: _Formula, stack: list[_Frame], kind: str, i: int) -> str | None:
    """Pop the innermost frame for a ``}`` or ``\\end{kind}`` at ``i``, or say why not."""
    top = stack[-1]
    if top.kind != kind:
        return _mismatch(formula, stack, kind, i)
    if top.lefts:
        return formula.refuse(top.lefts[-1], "has no matching \\right")
    stack.pop()
    formula.matches[top.start] = i
    return None


def _pair(formula: _Formula, frame: _Frame, i: int) -> str | None:
    """Pair \\left/\\middle/\\right within one group (TeX requires it) and check delimiters."""
    pieces = formula.pieces
    if i + 1 >= len(pieces) or pieces[i + 1] not in _LEFT_RIGHT_DELIMITERS:
        return formula.refuse(i, "is not followed by a delimiter")
    if pieces[i] == "\\left":
        frame.lefts.append(i)
    elif not frame.lefts:
        return formula.refuse(i, "has no matching \\left")
    elif pieces[i] == "\\right":
        frame.lefts.pop()
    return None


def _cell_end(formula: _Formula, stack: list[_Frame], i: int) -> str | None:
    """Note where \\\\ ends an alignment row; a \\left must close in its own cell.

    Inside braces or a picture within an alignment, ``&`` and ``\\\\`` confuse TeX's alignment
    code into cascades of errors; outside any alignment they cost one error each and are left
    alone, unless a command argument or a split holds them (see ``_stray_problem``).
    """
    frame = stack[-1]
    if frame.kind not in _ALIGNMENTS:
        if any(outer.kind in _ALIGNMENTS for outer in stack):
            return formula.refuse(i, f"is inside {_describe(formula, frame)} within an array")
        formula.strays.append(i)
        return None
    if frame.lefts:
        cell_end = f"{formula.pieces[i]} at token {formula.at(i)}"
        return formula.refuse(frame.lefts[-1], f"has no matching \\right before {cell_end}")
    if formula.pieces[i] == "&":
        formula.cell_breaks.add(i)
    elif frame.kind in _RULED:
        formula.row_breaks.add(i)
    return None


def _unclosed(formula: _Formula, stack: list[_Frame]) -> str | None:
    """Whatever is still open at the end of the formula."""
    top = stack[-1]
    if top.kind == "{":
        braces = [frame for frame in stack if frame.kind == "{"]
        first = formula.at(braces[0].start)
        return f"unbalanced braces: {len(braces)} unclosed {{ (first at token {first})"
    if top.kind:
        return f"{_describe(formula, top)} is never closed"
    if top.lefts:
        return formula.refuse(top.lefts[-1], "has no matching \\right")
    return None


def _structure_step(formula: _Formula, stack: list[_Frame], i: int) -> str | int | None:
    """Handle the structural token at ``i``: a reason, the index to resume at, or None."""
    piece = formula.pieces[i]
    if piece == "{":
        stack.append(_Frame("{", i))
        return None
    if piece == "}":
        return _close(formula, stack, "{", i)
    if piece == "&" or piece == "\\\\":
        return _cell_end(formula, stack, i)
    if piece != "\\begin" and piece != "\\end":
        return _pair(formula, stack[-1], i)
    found = _environment(formula, i)
    if isinstance(found, str):
        return found
    name, after = found
    formula.matches[i + 1] = after - 1  # the braces around the name
    if piece == "\\begin":
        stack.append(_Frame(name, i))
        return after
    return _close(formula, stack, name, i) or after


def _structure_problem(formula: _Formula) -> str | None:
    """Check braces, \\begin/\\end nesting, \\left/\\right pairing and depth in one pass."""
    stack = [_Frame("", -1)]
    resume, depth = 0, 0
    pieces, matches = formula.pieces, formula.matches
    for i in _positions(pieces, _STRUCTURAL):
        if i < resume:  # inside the {name} of a \begin or \end
            continue
        top = stack[-1]
        if pieces[i] == "}" and top.kind == "{" and not top.lefts:  # the common case, inlined
            stack.pop()
            matches[top.start] = i
            depth -= 1
            continue
        step = _structure_step(formula, stack, i)
        if isinstance(step, str):
            return step
        resume = step or resume
        depth += _NESTING_STEP.get(formula.pieces[i], 0)
        if depth > MAX_NESTING:
            return formula.refuse(i, f"nests deeper than {MAX_NESTING} groups")
    return _unclosed(formula, stack) or _split_problem(formula)


def _split_problem(formula: _Formula) -> str | None:
    """A stray & or \\\\ costs one error, but after a split environment a dozen or more."""
    if not formula.strays or "split" not in formula.text:
        return None
    pieces = formula.pieces
    for i in _positions(pieces, frozenset(["\\begin"])):
        found = _environment_name(pieces, i)
        if found and found[0] == "split":
            split = f"{formula.name(i)} at token {formula.at(i)}"
            return formula.refuse(formula.strays[0], f"is outside any array, which breaks {split}")
    return None


def _stray_problem(formula: _Formula, i: int, end: int) -> str | None:
    """Refuse a stray & or \\\\ in the arguments (``i`` to ``end``) of the command at ``i``.

    Many commands build an internal alignment (\\overrightarrow, \\overbrace, \\substack ...),
    which a stray & or \\\\ turns into a cascade of errors.
    """
    inside = [k for k in formula.strays if i < k < end]
    if not inside:
        return None
    where = f"{formula.name(i)} at token {formula.at(i)}"
    return formula.refuse(inside[0], f"is outside any array, in an argument of {where}")


# --- arguments -------------------------------------------------------------------------------


def _find_at_depth_zero(pieces: list[str], i: int, target: str, matches: dict[int, int]) -> int:
    """Index just after the first ``target`` from ``i`` outside nested groups, or -1."""
    n = len(pieces)
    while i < n:
        piece = pieces[i]
        if piece == target:
            return i + 1
        if piece == "}":
            return -1
        i = matches[i] + 1 if piece == "{" else i + 1
    return -1


def _text_problem(formula: _Formula, i: int, start: int, end: int, safe: frozenset[str]) -> str:
    """Refuse the first token in ``pieces[start:end]`` that is not ``safe`` in text mode.

    Returns "" when all are safe, so callers can write ``_text_problem(...) or index``.
    """
    for piece in formula.pieces[start:end]:
        if piece not in safe:
            return formula.refuse(i, f"has {piece.rstrip()} in text mode, where it is not allowed")
    return ""


def _unbraced_problem(formula: _Formula, i: int, nxt: str | None) -> str | None:
    """Refuse a missing argument, or a command the command at ``i`` would cut off."""
    if nxt is None or nxt in _NOT_AN_ARGUMENT:
        return formula.refuse(i, "is missing an argument")
    if nxt in _NEEDS_ARGUMENTS and formula.pieces[i] not in _SCANS_MATH_FIELD:
        return formula.refuse(i, f"would take {nxt} without its arguments: add {{ }} around them")
    return None


def _read_bracketed(formula: _Formula, i: int, j: int, kind: str) -> int | str:
    """Skip a ``[..]`` (o, a) or ``(x,y)`` (c, C) that must be closed; refuse one (n)."""
    pieces, matches = formula.pieces, formula.matches
    opener, closer = ("(", ")") if kind in "cC" else ("[", "]")
    if j >= len(pieces) or pieces[j] != opener:
        return formula.refuse(i, "needs ( x , y )") if kind == "C" else j
    if kind == "n":
        return formula.refuse(i, "is followed by [, which TeX reads as a length: write { [ }")
    end = _find_at_depth_zero(pieces, j + 1, closer, matches)
    if end < 0:
        return formula.refuse(i, f"has {opener} never closed by {closer}")
    if kind in "cC" and not 0 <= _find_at_depth_zero(pieces, j + 1, ",", matches) < end:
        return formula.refuse(i, "has ( ) without the comma of x , y")
    if kind == "a" and (end != j + 3 or pieces[j + 1] not in _POSITIONS):
        return formula.refuse(i, "takes only [ t ], [ b ] or [ c ]")
    return end


def _read_group(formula: _Formula, i: int, j: int, kind: str) -> int | str:
    """Skip a mandatory argument: any token or group (m), or a {group} of the right form."""
    pieces = formula.pieces
    nxt = pieces[j] if j < len(pieces) else None
    problem = _unbraced_problem(formula, i, nxt)
    if problem:
        return problem
    safe = _TEXT_KINDS.get(kind)
    if nxt != "{":
        if kind not in "mtp":
            return formula.refuse(i, "needs a { } argument")
        return (safe and _text_problem(formula, i, j, j + 1, safe)) or j + 1
    end = formula.matches[j]
    if safe:
        return _text_problem(formula, i, j + 1, end, safe) or end + 1
    inside = pieces[j + 1 : end]
    if kind == "r" and not _COLUMN_RANGE.fullmatch("".join(inside)):
        return formula.refuse(i, "needs a column range { n - m }")
    if kind == "k" and not (inside and _COLUMN_TYPES.issuperset(inside)):
        return formula.refuse(i, "needs a column spec made of l c r |")
    if kind == "N" and not (len(inside) == 1 and inside[0].isdigit()):
        return formula.refuse(i, "needs a number of columns { n }")
    return end + 1


def _read_argument(formula: _Formula, i: int, j: int, kind: str) -> int | str:
    """Skip one argument of shape ``kind`` starting at ``j``: the index after it, or a reason."""
    if kind == "s":
        return j + (j < len(formula.pieces) and formula.pieces[j] == "*")
    if kind in "oacCn":
        return _read_bracketed(formula, i, j, kind)
    if kind in "mbrktTpN":
        return _read_group(formula, i, j, kind)
    if kind == "d":
        delimiter = j < len(formula.pieces) and formula.pieces[j] in _LEFT_RIGHT_DELIMITERS
        return j + 1 if delimiter else formula.refuse(i, "is not followed by a delimiter")
    if _find_at_depth_zero(formula.pieces, j, "\\over", formula.matches) < 0:
        return formula.refuse(i, "has no matching \\over")
    return j


def _read_arguments(formula: _Formula, i: int) -> int | str:
    """Read all arguments of the command at ``i``: the index after them, or a reason."""
    pieces = formula.pieces
    spec, j = _ARGUMENTS.get(pieces[i], ""), i + 1
    if pieces[i] == "\\begin":  # the structure pass has checked the name
        name, j = _environment_name(pieces, i) or ("", j)
        spec = _ENVIRONMENT_ARGUMENTS.get(name, "")
    for kind in spec:
        found = _read_argument(formula, i, j, kind)
        if isinstance(found, str):
            return found
        j = found
    if spec == _ENVIRONMENT_ARGUMENTS["picture"] and pieces[i] == "\\begin":  # text-like body
        return _text_problem(formula, i, j, formula.matches[i], _PICTURE_SAFE) or j
    return j


def _starts_rows(formula: _Formula, i: int) -> bool:
    """Whether what follows the command at ``i`` (and its arguments) starts a _RULED row."""
    piece = formula.pieces[i]
    if piece == "\\begin":
        found = _environment_name(formula.pieces, i)
        return found is not None and found[0] in _RULED
    return piece == "\\hline" or piece == "\\cline" or i in formula.row_breaks


def _argument_problem(formula: _Formula) -> str | None:
    """Every command must find its arguments inside its own group (see ``_ARGUMENTS``).

    Also \\hline and \\cline must start a row of an alignment and \\multicolumn a cell.  Runs
    after the structure pass, which has checked the braces and filled ``matches``,
    ``row_breaks`` and ``cell_breaks``.
    """
    row_starts: set[int] = set()
    cell_starts = {k + 1 for k in formula.cell_breaks}
    copying: list[tuple[int, int]] = []  # the copying commands around: (argument end, doublings)
    texts: list[int] = []  # where the text-mode arguments around end
    fast = not formula.strays
    pieces, last = formula.pieces, len(formula.pieces) - 1
    for i in _positions(pieces, _TAKES_ARGUMENTS):
        piece = pieces[i]
        if fast and _ARGUMENTS.get(piece) == "m" and piece not in _SLOW_M:  # inlined
            problem = _unbraced_problem(formula, i, None if i == last else pieces[i + 1])
            if problem:
                return problem
            continue
        if (piece == "\\hline" or piece == "\\cline") and i not in row_starts:
            return formula.refuse(i, "is not at the start of a row of an array")
        if piece == "\\multicolumn" and i not in row_starts and i not in cell_starts:
            return formula.refuse(i, "is not at the start of a cell of an array")
        end = _read_arguments(formula, i)
        if isinstance(end, str):
            return end
        problem = formula.strays and _stray_problem(formula, i, end)
        if problem:
            return problem
        if _starts_rows(formula, i):
            row_starts.add(end)
        problem = _mode_problem(formula, texts, i, end)
        if problem:
            return problem
        cost = BOX_COST.get(_construct(formula, i), 0)
        if cost:
            formula.boxes.append((i, formula.matches[i] if piece == "\\begin" else end, cost))
        doublings = _doublings(pieces, i)
        if doublings:
            problem = _copy_nesting_problem(formula, copying, i, (end, doublings))
            if problem:
                return problem
    return None


def _mode_problem(formula: _Formula, texts: list[int], i: int, end: int) -> str | None:
    """Text accents only in text mode: in math TeX fails the formula anyway, after error
    recovery that costs several errors per accent.  ``texts`` tracks the text arguments around
    ``i``."""
    while texts and texts[-1] <= i:
        texts.pop()
    piece = formula.pieces[i]
    if piece in _TEXT_ONLY_ACCENTS and not texts:
        return formula.refuse(i, "is a text accent, which TeX refuses in math: use \\text { }")
    if piece == "\\begin" and _construct(formula, i) == "picture":
        texts.append(formula.matches[i])
    elif set(_ARGUMENTS.get(piece, "")) & set(_TEXT_KINDS):
        texts.append(end)
    return None


def _construct(formula: _Formula, i: int) -> str:
    """The command at ``i``, or the name of the environment a \\begin there opens."""
    if formula.pieces[i] != "\\begin":
        return formula.pieces[i]
    found = _environment_name(formula.pieces, i)
    return found[0] if found else ""


def _enclosing_group(formula: _Formula, i: int) -> tuple[int, int]:
    """Where the innermost { } group or environment around ``i`` opens and closes."""
    pieces, depth = formula.pieces, 0
    for k in range(i - 1, -1, -1):
        piece = pieces[k]
        if piece == "}" or piece == "\\end":
            depth += 1
        elif piece == "{" or piece == "\\begin":
            if depth == 0:
                return k, formula.matches[k]
            depth -= 1
    return 0, len(pieces)


def _box_depth_problem(formula: _Formula) -> str | None:
    """Refuse boxes nested deeper than dvipng can draw, charging each construct BOX_COST.

    Costly commands box their arguments; infix fractions, \\limits and \\cline box the
    whole group around them.  Runs after the argument pass, which records the commands.
    """
    boxes = formula.boxes
    for i in _positions(formula.pieces, _GROUP_WIDE):
        boxes.append((*_enclosing_group(formula, i), BOX_COST[formula.pieces[i]]))
    open_boxes: list[tuple[int, int]] = []  # (end, cost) of the boxes around the current one
    depth = 0
    for start, end, cost in sorted(boxes, key=lambda box: (box[0], -box[1])):
        while open_boxes and open_boxes[-1][0] < start:
            depth -= open_boxes.pop()[1]
        open_boxes.append((end, cost))
        depth += cost
        if depth > MAX_BOX_DEPTH:
            what = f"nests boxes deeper than dvipng can draw ({depth} > {MAX_BOX_DEPTH} levels)"
            return formula.refuse(start, what)
    return None


def _doublings(pieces: list[str], i: int) -> int:
    """How many times over the command at ``i`` doubles the work of typesetting its argument."""
    piece = pieces[i]
    if piece in _STYLE_COPYING and (piece != "\\sqrt" or pieces[i + 1] == "["):
        return 2
    return 1 if piece in _DOUBLING else 0


def _copy_nesting_problem(
    formula: _Formula, copying: list[tuple[int, int]], i: int, command: tuple[int, int]
) -> str | None:
    """Track the copying commands around ``i``: (where their arguments end, doublings)."""
    while copying and copying[-1][0] <= i:
        copying.pop()
    copying.append(command)
    total = sum(doublings for _, doublings in copying)
    if total > MAX_COPY_DOUBLINGS:
        limit = 2**MAX_COPY_DOUBLINGS
        what = f"nests commands that copy their argument {2**total} times (the limit is {limit})"
        return formula.refuse(i, what)
    return None


# --- public entry point ----------------------------------------------------------------------


def check_formula(formula: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """Return None if ``formula`` may be rendered, else a one-line reason naming the offender.

    Checks run cheapest first: characters, vocabulary (allow-list), digits, structure
    (braces, environments, \\left/\\right, nesting), then argument shapes.  Leading and trailing
    whitespace is ignored; render ``normalize(formula)``, which is exactly what was checked.
    """
    problem = _character_problem(formula, max_chars)
    if problem:
        return problem
    parsed = _Formula(normalize(formula))
    return (
        _vocabulary_problem(parsed)
        or _joined_digit_problem(parsed.text)
        or _structure_problem(parsed)
        or _argument_problem(parsed)
        or _box_depth_problem(parsed)
    )
