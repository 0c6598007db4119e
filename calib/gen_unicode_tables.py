#!/usr/bin/env python3
"""Generates calib/unicode_tables.cpp: the Unicode data the byte-level BPE tokenizer needs.

  python3 calib/gen_unicode_tables.py > calib/unicode_tables.cpp

Only the Python standard library is used (unicodedata); the Unicode version is the one
of the Python that runs it and is written into the output. Tables:

  * letters      \\p{L}  (general categories Lu Ll Lt Lm Lo), as sorted [first, last] ranges
  * numbers      \\p{N}  (Nd Nl No)
  * white space  \\s     (the White_Space property, which is what the regex engines of
                          Hugging Face tokenizers use for \\s; it is not str.isspace(), which
                          also holds for U+001C..U+001F)
  * NFC data: canonical combining classes (ranges of equal non-zero class), full canonical
    decompositions (recursively expanded; Hangul syllables are algorithmic and not listed)
    and the primary composites (pairs that canonical composition joins).

Before writing, the script checks the NFC tables by running the same decompose / reorder /
compose algorithm as calib/unicode.cpp, in Python, against unicodedata.normalize('NFC') on
every single code point and on a set of tricky sequences.
"""
import sys
import unicodedata

MAX_CP = 0x110000
SURROGATES = range(0xD800, 0xE000)

# White_Space (PropList.txt). Stable since Unicode 6.3; checked against str.isspace below.
WHITE_SPACE = [(0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0),
               (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F),
               (0x205F, 0x205F), (0x3000, 0x3000)]

S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
N_COUNT = V_COUNT * T_COUNT
S_COUNT = L_COUNT * N_COUNT


def ranges(pred):
    """Sorted [first, last] ranges of the code points where pred(cp) holds."""
    out, start = [], None
    for cp in range(MAX_CP + 1):
        ok = cp < MAX_CP and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def category_ranges(prefix):
    return ranges(lambda cp: unicodedata.category(chr(cp)).startswith(prefix))


def check_white_space():
    listed = {cp for a, b in WHITE_SPACE for cp in range(a, b + 1)}
    isspace = {cp for cp in range(MAX_CP) if chr(cp).isspace()} - set(range(0x1C, 0x20))
    assert listed == isspace, sorted(listed ^ isspace)


def canonical_decomposition(cp):
    """One level of canonical decomposition, or None (compatibility mappings ignored)."""
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith('<'):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomposition(cp):
    d = canonical_decomposition(cp)
    if d is None:
        return [cp]
    out = []
    for x in d:
        out.extend(full_decomposition(x))
    return out


def nfc_tables():
    ccc = {}
    decomp = {}
    pairs = {}
    for cp in range(MAX_CP):
        if cp in SURROGATES:
            continue
        c = unicodedata.combining(chr(cp))
        if c:
            ccc[cp] = c
        d = canonical_decomposition(cp)
        if d is None:
            continue
        decomp[cp] = full_decomposition(cp)
        # Primary composite: a two-character canonical decomposition that NFC does not
        # exclude (singletons, non-starter decompositions and the composition exclusions
        # all fail NFC(cp) == cp or have one character).
        if len(d) == 2 and unicodedata.normalize('NFC', chr(cp)) == chr(cp):
            pairs[(d[0], d[1])] = cp
    return ccc, decomp, pairs


def ccc_ranges(ccc):
    out = []
    for cp in sorted(ccc):
        if out and out[-1][1] == cp - 1 and out[-1][2] == ccc[cp]:
            out[-1][1] = cp
        else:
            out.append([cp, cp, ccc[cp]])
    return out


class PyNfc:
    """The algorithm of calib/unicode.cpp, on the generated tables, for self-checking."""

    def __init__(self, ccc, decomp, pairs):
        self.ccc, self.decomp, self.pairs = ccc, decomp, pairs

    def decompose(self, cp):
        if S_BASE <= cp < S_BASE + S_COUNT:
            s = cp - S_BASE
            out = [L_BASE + s // N_COUNT, V_BASE + (s % N_COUNT) // T_COUNT]
            if s % T_COUNT:
                out.append(T_BASE + s % T_COUNT)
            return out
        return self.decomp.get(cp, [cp])

    def compose_pair(self, a, b):
        if L_BASE <= a < L_BASE + L_COUNT and V_BASE <= b < V_BASE + V_COUNT:
            return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT
        if (S_BASE <= a < S_BASE + S_COUNT and (a - S_BASE) % T_COUNT == 0
                and T_BASE < b < T_BASE + T_COUNT):
            return a + (b - T_BASE)
        return self.pairs.get((a, b))

    def nfc(self, text):
        d = []
        for ch in text:
            d.extend(self.decompose(ord(ch)))
        # canonical ordering: stable sort of each run of non-starters by class
        i = 0
        while i < len(d):
            if self.ccc.get(d[i], 0) == 0:
                i += 1
                continue
            j = i
            while j < len(d) and self.ccc.get(d[j], 0) != 0:
                j += 1
            d[i:j] = sorted(d[i:j], key=lambda c: self.ccc.get(c, 0))
            i = j
        out, starter = [], -1
        for c in d:
            cc = self.ccc.get(c, 0)
            if starter >= 0:
                adjacent = len(out) == starter + 1
                last = self.ccc.get(out[-1], 0)
                if adjacent or (last != 0 and last < cc):
                    comp = self.compose_pair(out[starter], c)
                    if comp is not None:
                        out[starter] = comp
                        continue
            if cc == 0:
                starter = len(out)
            out.append(c)
        return ''.join(map(chr, out))


def self_check(ccc, decomp, pairs):
    nfc = PyNfc(ccc, decomp, pairs)
    cps = [cp for cp in range(MAX_CP) if cp not in SURROGATES]
    for cp in cps:
        s = chr(cp)
        assert nfc.nfc(s) == unicodedata.normalize('NFC', s), hex(cp)
    # Every decomposable character's decomposition, each followed by combining marks.
    marks = [0x0300, 0x0301, 0x0308, 0x0323, 0x0327, 0x0338, 0x0345, 0x05B0, 0x0E48, 0x3099]
    for cp in decomp:
        base = ''.join(map(chr, decomp[cp]))
        for m in marks:
            for s in (base + chr(m), chr(m) + base, base + chr(m) + chr(0x0323)):
                assert nfc.nfc(s) == unicodedata.normalize('NFC', s), (hex(cp), hex(m))
    tricky = ['e\u0301', 'a\u0323\u0302', 'a\u0302\u0323', '\u1100\u1161\u11a8', '\uac00\u11a8',
              '\u212b', '\u0344', 'q\u0307\u0323', '\u0958', 'A\u030a\u0301', '\u1e0b\u0323',
              '\u0fb2\u0f80', '\u09c7\u09be', '\u0b47\u0b3e\u0b56', 'x\u0301\u0301',
              '\u00c5\u0301', '\u0041\u0300\u0041\u0300', '\u1100\u1100\u1161\u11a8\u11a8']
    for s in tricky:
        assert nfc.nfc(s) == unicodedata.normalize('NFC', s), s.encode('unicode_escape')
    # The C++ fast path: text below U+0300 is already NFC and nothing composes onto it.
    seconds = {b for (_, b) in pairs}
    for cp in range(0x300):
        assert unicodedata.normalize('NFC', chr(cp)) == chr(cp) and cp not in ccc, hex(cp)
        assert cp not in seconds, hex(cp)
    assert min(seconds) >= 0x300 and min(ccc) >= 0x300


def emit_ranges(out, name, rs):
    out.append(f'const CodepointRange {name}[] = {{')
    line = ' '
    for a, b in rs:
        item = f' {{0x{a:X}, 0x{b:X}}},'
        if len(line) + len(item) > 96:
            out.append(line)
            line = ' '
        line += item
    out.append(line)
    out.append('};')
    out.append(f'const size_t {name}_size = sizeof({name}) / sizeof({name}[0]);')
    out.append('')


def emit_rows(out, decl, items, per_line_limit=96):
    out.append(decl + ' = {')
    line = ' '
    for item in items:
        if len(line) + len(item) + 1 > per_line_limit:
            out.append(line)
            line = ' '
        line += ' ' + item
    out.append(line)
    out.append('};')


def main():
    check_white_space()
    letters = category_ranges('L')
    numbers = category_ranges('N')
    ccc, decomp, pairs = nfc_tables()
    self_check(ccc, decomp, pairs)

    out = []
    out.append('// GENERATED by calib/gen_unicode_tables.py from Python %s unicodedata (Unicode %s).'
               % (sys.version.split()[0], unicodedata.unidata_version))
    out.append('// Do not edit: change the generator and run')
    out.append('//   python3 calib/gen_unicode_tables.py > calib/unicode_tables.cpp')
    out.append('#include "calib/unicode_tables.hpp"')
    out.append('')
    out.append('namespace razerq::calib::unicode::tables {')
    out.append('')
    out.append(f'const char* const kUnicodeVersion = "{unicodedata.unidata_version}";')
    out.append('')
    out.append('// \\p{L}: general categories Lu, Ll, Lt, Lm, Lo.')
    emit_ranges(out, 'kLetter', letters)
    out.append('// \\p{N}: general categories Nd, Nl, No.')
    emit_ranges(out, 'kNumber', numbers)
    out.append('// \\s: the White_Space property.')
    emit_ranges(out, 'kWhiteSpace', WHITE_SPACE)

    out.append('// Canonical combining classes: [first, last] ranges of one non-zero class.')
    emit_rows(out, 'const CombiningClassRange kCombiningClass[]',
              [f'{{0x{a:X}, 0x{b:X}, {c}}},' for a, b, c in ccc_ranges(ccc)])
    out.append('const size_t kCombiningClass_size = sizeof(kCombiningClass) / sizeof(kCombiningClass[0]);')
    out.append('')

    # Decompositions: sorted code points, each pointing at its slice of one flat array.
    flat, entries = [], []
    for cp in sorted(decomp):
        d = decomp[cp]
        assert 1 <= len(d) <= 255
        entries.append(f'{{0x{cp:X}, {len(flat)}, {len(d)}}},')
        flat.extend(d)
    out.append('// Full canonical decompositions (Hangul syllables excluded: algorithmic).')
    emit_rows(out, 'const uint32_t kDecompositionData[]', [f'0x{x:X},' for x in flat])
    emit_rows(out, 'const Decomposition kDecomposition[]', entries)
    out.append('const size_t kDecomposition_size = sizeof(kDecomposition) / sizeof(kDecomposition[0]);')
    out.append('')

    out.append('// Primary composites, sorted by (first, second) (Hangul excluded: algorithmic).')
    emit_rows(out, 'const Composition kComposition[]',
              [f'{{0x{a:X}, 0x{b:X}, 0x{c:X}}},' for (a, b), c in sorted(pairs.items())])
    out.append('const size_t kComposition_size = sizeof(kComposition) / sizeof(kComposition[0]);')
    out.append('')
    out.append('}  // namespace razerq::calib::unicode::tables')
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
