#include "generate.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "family.h"
#include "forward.h"

typedef struct {
    char  *s;
    size_t len, cap;
} text_buf;

/* Append a piece as llama2.c's safe_printf prints it: a lone unprintable byte is skipped. */
static int text_append(text_buf *b, const char *p, int n) {
    if (n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0]))) return 0;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t nc = (b->cap + (size_t)n + 1) * 2;
        char *q = realloc(b->s, nc);
        if (!q) return -1;
        b->s = q;
        b->cap = nc;
    }
    memcpy(b->s + b->len, p, (size_t)n);
    b->len += (size_t)n;
    b->s[b->len] = '\0';
    return 0;
}

void generation_free(generation *g) {
    if (!g) return;
    free(g->tokens);
    free(g->text);
    memset(g, 0, sizeof *g);
}

int generate_greedy(const model *m, const tokenizer *t, const char *prompt, int steps,
                    generation *out, err *e) {
    memset(out, 0, sizeof *out);
    fwd_cache *c = NULL;
    int *ptoks = NULL, np = 0;
    float *logits = NULL;
    text_buf text = {0};
    if (steps > m->cfg.seq_len) steps = m->cfg.seq_len;   /* as llama2.c: clip to context */
    int rc = tokenizer_encode(t, prompt, true, false, &ptoks, &np, e);
    /* A tokenizer without a BOS (GPT-2, GPT-NeoX) adds none: the prompt's first token is then
     * text, and an empty prompt starts from the family's BOS (Mamba: 0, <|endoftext|>), as
     * Hugging Face's generate starts from bos_token_id. */
    int *raw = NULL, nraw = 0;
    if (!rc) rc = tokenizer_encode(t, prompt, false, false, &raw, &nraw, e);
    bool first_is_text = !rc && np == nraw && np > 0;
    free(raw);
    if (!rc && np == 0) {
        int *p = realloc(ptoks, sizeof(int));
        if (!p) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
        else {
            ptoks = p;
            ptoks[np++] = m->fam->bos;
        }
    }
    if (!rc && np > steps) rc = err_set(e, SPARQ_EINPUT, "prompt has %d tokens, more than the %d steps", np, steps);
    if (!rc) rc = fwd_cache_new(&c, m, e);
    if (!rc) {
        logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
        out->tokens = malloc((size_t)(steps + 1) * sizeof(int));
        if (!logits || !out->tokens || text_append(&text, "", 0))
            rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    if (!rc && first_is_text) {
        int len;
        const char *piece = tokenizer_decode(t, ptoks[0], ptoks[0], &len);
        if (text_append(&text, piece, len)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    }
    if (!rc) {
        int token = ptoks[0];
        out->tokens[out->n++] = token;
        for (int pos = 0; pos < steps && !rc; pos++) {
            rc = forward_token(m, c, token, pos, logits, e);
            if (rc) break;
            int next = 0;
            if (pos < np - 1) next = ptoks[pos + 1];
            else
                for (int i = 1; i < m->cfg.vocab_size; i++)
                    if (logits[i] > logits[next]) next = i;
            if (next == TOKEN_BOS) break;
            out->tokens[out->n++] = next;
            int len;
            const char *piece = tokenizer_decode(t, token, next, &len);
            if (text_append(&text, piece, len)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
            token = next;
        }
    }
    out->text = text.s;
    free(logits);
    free(ptoks);
    fwd_cache_free(c);
    if (rc) generation_free(out);
    return rc;
}

int generate_greedy_ids(const model *m, const int *prompt, int np, int steps, generation *out,
                        err *e) {
    memset(out, 0, sizeof *out);
    if (steps > m->cfg.seq_len) steps = m->cfg.seq_len;
    if (np > steps)
        return err_set(e, SPARQ_EINPUT, "prompt has %d ids, more than the %d steps", np, steps);
    fwd_cache *c = NULL;
    int rc = fwd_cache_new(&c, m, e);
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    out->tokens = malloc((size_t)steps * sizeof(int));
    if (!rc && (!logits || !out->tokens)) rc = err_set(e, SPARQ_ERUNTIME, "out of memory");
    if (!rc) {
        memcpy(out->tokens, prompt, (size_t)np * sizeof(int));
        out->n = np;
    }
    /* Position pos feeds tokens[pos]; from the prompt's last position on, each argmax is kept. */
    for (int pos = 0; !rc && pos < steps - 1 && pos < out->n; pos++) {
        rc = forward_token(m, c, out->tokens[pos], pos, logits, e);
        if (rc || pos < np - 1) continue;
        int next = 0;
        for (int i = 1; i < m->cfg.vocab_size; i++)
            if (logits[i] > logits[next]) next = i;
        out->tokens[out->n++] = next;
    }
    free(logits);
    fwd_cache_free(c);
    if (rc) generation_free(out);
    return rc;
}
