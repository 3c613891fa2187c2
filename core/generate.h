/* Greedy generation as llama2.c's run.c does it: the prompt fed one position per step, then the
 * argmax, stopping at BOS (llama2.c models' story delimiter) or the context's end. Owns the ids
 * and the text it returns; knows nothing of sampling beyond the argmax. */
#ifndef SPARQ_GENERATE_H
#define SPARQ_GENERATE_H

#include "err.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
    int  *tokens;            /* BOS, the prompt, then the generated ids            */
    int   n;
    char *text;              /* the pieces as llama2.c prints them (NUL-terminated) */
} generation;

/* Up to `steps` positions (clipped to the model's context); a prompt longer than that fails. */
int  generate_greedy(const model *m, const tokenizer *t, const char *prompt, int steps,
                     generation *out, err *e);
/* The same from token ids: prompt[0 .. np) fed as given (no BOS added), then the argmax (ties
 * to the lowest id) until `steps` positions; no token stops it. text is NULL. */
int  generate_greedy_ids(const model *m, const int *prompt, int np, int steps, generation *out,
                         err *e);
void generation_free(generation *g);

#endif
