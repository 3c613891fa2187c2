/* Zero-shot accuracy in the lm-evaluation-harness convention (algorithms.md §8): task adapters
 * that read the original task files into log-likelihood requests, the batched scoring of those
 * requests, and acc / acc_norm / perplexity with standard errors. Owns tasks; never sees a solver. */
#ifndef SPARQ_ZEROSHOT_H
#define SPARQ_ZEROSHOT_H

#include <stdbool.h>

#include "../core/err.h"
#include "../core/model.h"
#include "../core/progress.h"
#include "../core/tokenizer.h"

/* One log-likelihood request, as the harness builds it: trailing whitespace of the context
 * already moved to the front of the continuation. tokens = ids_ctx ++ ids_cont where
 * ids_ctx = tok(context) and ids_cont = tok(context + continuation)[n_ctx:], both encoded from
 * BOS (stories260K needs it; the harness adds none for LLaMA, which changes no split). */
typedef struct {
    char *context, *continuation;
    int   chars;             /* characters (code points) of the choice, for acc_norm          */
    int  *tokens;            /* [n_ctx + n_cont]                                               */
    int   n_ctx, n_cont;
} zeroshot_request;

typedef struct {
    int first, n;            /* its requests: req[first .. first + n)                          */
    int gold;                /* index of the right choice among them (0 for one request)       */
    int line;                /* line of the task file (or document number) it came from       */
} zeroshot_doc;

typedef enum {
    ZS_MULTIPLE_CHOICE,      /* acc = 1[argmax_i LL_i == gold]; acc_norm divides LL_i by chars */
    ZS_LOGLIKELIHOOD,        /* one request: acc = every continuation token greedy; ppl        */
} zeroshot_kind;

typedef struct {
    char             *name;  /* adapter name: piqa, arc_easy, ..., cloze, ending               */
    char             *path;  /* the data file (for messages)                                   */
    zeroshot_kind     kind;
    bool              acc_norm;   /* the harness reports acc_norm for this task                */
    zeroshot_doc     *docs;
    int               n_docs;
    zeroshot_request *req;
    int               n_req;
} zeroshot_task;

/* The adapters zeroshot_load_task knows, NULL-terminated: piqa, arc_easy, arc_challenge,
 * hellaswag, winogrande, boolq, lambada, and the two builders from any document text, cloze
 * (last word of each document, LAMBADA-style) and ending (the real last sentence among 4). */
extern const char *const zeroshot_task_names[];

/* Read the task file at `path` with adapter `name`, build its requests and tokenize them.
 * limit > 0 keeps the first `limit` documents; seed drives the `ending` builder only.
 * Labels files: `path` may be "DATA,LABELS"; otherwise piqa (and winogrande items without an
 * "answer") read the sibling X-labels.lst of X.jsonl. Bad files fail with SPARQ_EINPUT and a
 * message naming the file, line and field, and so does an item with nothing to score (a field
 * its context or a choice comes from empty or only whitespace, fewer than 2 choices, a
 * continuation that tokenizes to nothing after its context). Blank lines are skipped. */
int  zeroshot_load_task(const tokenizer *t, const char *name, const char *path, int limit,
                        unsigned long seed, zeroshot_task *out, err *e);
void zeroshot_task_free(zeroshot_task *t);

typedef struct {
    long   requests;         /* requests scored                                               */
    int    sequences;        /* sequences through the model (requests sharing one are merged) */
    long   tokens_forward;   /* tokens through the model                                      */
    double seconds;          /* forward pass and scoring                                      */
    int    clipped;          /* continuations longer than the model's context: only their last
                                `context` tokens are scored (the harness cannot score them)    */
} zeroshot_stats;

/* Score every request with the batched forward pass: ll[i] = sum over continuation tokens of
 * log p(token | prefix), greedy[i] = every continuation token is the argmax. Inputs are
 * (ids_ctx ++ ids_cont) minus the last token, left-truncated to the model's context. Requests
 * whose inputs are a prefix of another request's of the same document read that one's logits
 * (one-token continuations of a shared context cost one sequence). */
int zeroshot_score(const model *m, const zeroshot_task *t, double *ll, bool *greedy,
                   zeroshot_stats *st, progress_fn progress, void *progress_ctx, err *e);

typedef struct {
    int    n;                /* documents                                                     */
    double acc, acc_stderr;
    bool   has_acc_norm;
    double acc_norm, acc_norm_stderr;
    bool   has_ppl;          /* ZS_LOGLIKELIHOOD tasks: exp(-mean over documents of LL)       */
    double ppl, ppl_stderr;  /* ppl_stderr by the delta method: ppl * stderr(LL)              */
    double chance;           /* expected acc of a uniform guess (mean 1/choices; 0 for LL)    */
    zeroshot_stats stats;
} zeroshot_result;

/* The task's metrics from per-request scores (pure; stderr = sample std / sqrt(n)). */
void zeroshot_metrics(const zeroshot_task *t, const double *ll, const bool *greedy,
                      zeroshot_result *r);

/* zeroshot_score, then zeroshot_metrics. */
int zeroshot_run(const model *m, const zeroshot_task *t, zeroshot_result *r, progress_fn progress,
                 void *progress_ctx, err *e);

#endif
