#!/usr/bin/env python3
"""Rewrites a .cu file of libeecuda into C++ for the CPU emulation (see cuda_runtime.h beside this file):
kernel<<<grid, block, shared, stream>>>(args); becomes ee_emu_launch(dim3(grid), dim3(block), a closure calling kernel with
the args evaluated at the launch, stream) (and
kernel<T><<<...>>> likewise, with its template arguments)."""
import re
import sys


def split_top(s):
    depth, parts, cur = 0, [], ''
    for ch in s:
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def transform(src):
    out, i = [], 0
    pat = re.compile(r'(\w+(?:<[\w\s,:*]+>)?)\s*<<<')
    while True:
        m = pat.search(src, i)
        if not m:
            out.append(src[i:])
            break
        out.append(src[i:m.start()])
        end = src.index('>>>', m.end())
        cfg = split_top(src[m.end():end])
        j = src.index('(', end)
        depth, k = 0, j
        while True:
            if src[k] == '(':
                depth += 1
            elif src[k] == ')':
                depth -= 1
                if depth == 0:
                    break
            k += 1
        args = src[j + 1:k]
        stream = cfg[3] if len(cfg) > 3 else '0'
        # the arguments are evaluated at the launch, as CUDA copies them then: a graph replays the launch later
        out.append('ee_emu_launch(dim3(%s), dim3(%s), [=, ee_args = std::make_tuple(%s)]() { std::apply([](auto... a) { %s(a...); }, ee_args); }, %s)'
                   % (cfg[0], cfg[1], args, m.group(1), stream))
        i = k + 1
    text = ''.join(out)
    return re.sub(r'^\s*#pragma unroll.*$', '', text, flags=re.M)


if __name__ == '__main__':
    with open(sys.argv[1]) as f:
        text = transform(f.read())
    with open(sys.argv[2], 'w') as f:
        f.write(text)
