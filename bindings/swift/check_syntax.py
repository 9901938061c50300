"""Parses Swift files with tree-sitter's Swift grammar and fails on any syntax error.

A syntax check only (no type checking: there is no Swift compiler on Linux CI machines here).
Two constructs valid Swift that tree-sitter-swift 0.7.4 does not parse are rewritten first, line
count kept: UniFFI's `#if swift(>=5.8) @_documentation(visibility: private) #endif` attribute
blocks and the empty-tuple closure `{ () }`. A file given as `README.md` is checked through its
```swift blocks.
"""

import re
import sys

import tree_sitter_swift
from tree_sitter import Language, Parser

PARSER = Parser(Language(tree_sitter_swift.language()))
DOC_ATTR = re.compile(
    rb"[ \t]*#if swift\(>=5\.8\)\n[ \t]*@_documentation\(visibility: private\)\n[ \t]*#endif\n"
)


def sources(path):
    """(label, bytes) for each piece of Swift in `path`."""
    data = open(path, "rb").read()
    if not path.endswith(".md"):
        return [(path, data)]
    blocks = re.findall(rb"```swift\n(.*?)```", data, re.S)
    return [(f"{path} block {i + 1}", b) for i, b in enumerate(blocks)]


def errors(src):
    src = DOC_ATTR.sub(lambda m: b"\n" * 3, src).replace(b"{ () }", b"{ }")
    found = []
    stack = [PARSER.parse(src).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append(node)
        else:
            stack.extend(node.children)
    return [(n.start_point[0] + 1, src[n.start_byte : n.start_byte + 60]) for n in found]


def main():
    failed = 0
    checked = 0
    for path in sys.argv[1:]:
        pieces = sources(path)
        if not pieces:
            print(f"{path}: no Swift found")
            failed += 1
        for label, src in pieces:
            checked += 1
            for line, text in errors(src):
                print(f"{label}:{line}: syntax error near {text!r}")
                failed += 1
    print(f"swift syntax: {checked} pieces parsed, {failed} errors")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
