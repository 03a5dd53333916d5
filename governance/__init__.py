"""Model governance, above training and evaluation: who may become champion, decided and recorded.

`governance.promotion` holds the gates, promote and rollback; `governance.pipeline` chains
train -> evaluate -> promote. Training and evaluation never import this package.
"""
