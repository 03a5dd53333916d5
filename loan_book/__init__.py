"""A lender's own loan book: from one labelled table to a model that serves.

`coopscore train --table FILE --target COL` is how a bank or a cooperative development fund that
already has a loan book gets a model of its own; `coopscore score --model NAME --input FILE
--output FILE` scores new applications with it. One concept per module, in the order they run:

    errors       TableError: what is wrong with the table and what to do about it
    reading      read_table: CSV (comma or semicolon, decimal comma, UTF-8 with or without BOM) or
                 Parquet; Excel and empty files refused with advice
    labels       encode_label: which value of the target means default (--bad-value)
    roles        infer_roles / TableRoles: every column's role (numeric, category, date, id,
                 target, ignored) with the reason, the lender's overrides, missing-value tokens,
                 likely leaks; prepare: the feature matrix the models see
    validation   out-of-time splits (expanding window, a label-window gap) or random repeated CV
    candidates   the calibrated GBM, the WoE scorecard (optbinning), their blend, and the logistic
                 baseline: fit / pd / contributions
    selection    nested cross-validation: hyper-parameters and the candidate chosen inside each
                 outer fold, every candidate's AUC with its 95% interval
    model        LoanBookModel: roles + the chosen candidate refitted on every row, its reasons
                 (MLflow pyfunc, registered)
    reasons      reason texts (Vietnamese and English) from column names or the lender's own file
    card         the model card (HTML)
    train        train_loan_book: the steps above end to end, logged to MLflow
    scoring      score_file: a new file scored with a registered loan-book model

The package sits above `training` and `evaluation` (it uses their fitting and metrics) and below
`scoring`; the lender's table never mixes with the platform's data.
"""
