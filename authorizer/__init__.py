"""The Lambda authorizer: verifies a JWT and spends credits in DynamoDB.

Django-free by design (cold starts): nothing here imports Django or our Django apps.
"""
